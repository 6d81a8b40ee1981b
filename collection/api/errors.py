"""Domain errors → HTTP, in one place."""

from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from collection.services.errors import BudgetExceeded, InvalidInput, InvalidTransition, RunNotFound


def exception_handler(exc, context):
    if isinstance(exc, InvalidInput):
        return Response(exc.errors, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, BudgetExceeded):
        return Response(
            {"code": exc.code, "detail": exc.reason, "estimate": exc.estimate},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, InvalidTransition):
        return Response(
            {"code": exc.code, "detail": str(exc), "status": exc.status},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, RunNotFound):
        return Response({"code": exc.code, "detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, SuspiciousOperation):  # e.g. too many fields, a body over the upload limit
        return Response({"code": "bad_request", "detail": str(exc) or "Malformed request."},
                        status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, Http404):  # as DRF's handler would, so the code is known below
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    # Every error has a `code` beside its `detail` (404, 401/403, 405, 409, 415, 429, …).
    if response is not None and isinstance(response.data, dict) and "detail" in response.data \
            and "code" not in response.data:
        codes = exc.get_codes() if hasattr(exc, "get_codes") else None
        code = codes if isinstance(codes, str) else getattr(exc, "default_code", "error")
        response.data = {"code": code, **response.data}
    return response
