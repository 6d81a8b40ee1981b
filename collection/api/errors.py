"""Domain errors → HTTP, in one place. Every error under /api/ has one shape:
`{"code", "detail"}`, plus `errors` (messages by field) when input was refused field by field,
plus what the error is about (`estimate` over budget, `status` for an illegal transition)."""

from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from collection.services.errors import BudgetExceeded, InvalidInput, InvalidTransition, RunNotFound

NON_FIELD = "non_field_errors"


def field_errors(errors: dict, code: str = "invalid") -> dict:
    """The body of a refusal by field; `detail` names every field with its first message."""
    summary = "; ".join(f"{field}: {_first(messages)}" for field, messages in errors.items())
    return {"code": code, "detail": summary or "Invalid input.", "errors": errors}


def exception_handler(exc, context):
    if isinstance(exc, InvalidInput):
        return Response(field_errors(exc.errors, exc.code), status=status.HTTP_400_BAD_REQUEST)
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
    if response is not None:
        response.data = _shaped(exc, response.data)
    return response


def _shaped(exc, data) -> dict:
    code = getattr(exc, "default_code", "error")
    if isinstance(data, dict) and "detail" in data:  # 401, 403, 404, 405, 406, 409, 415, 429, parse errors
        codes = exc.get_codes() if hasattr(exc, "get_codes") else None
        return {"code": codes if isinstance(codes, str) else code, **data}
    if isinstance(data, list):  # a serializer's non-field errors
        data = {NON_FIELD: data}
    return field_errors(data, "invalid" if isinstance(exc, exceptions.ValidationError) else code)


def _first(messages) -> str:
    while isinstance(messages, (list, dict)) and messages:
        messages = messages[0] if isinstance(messages, list) else next(iter(messages.values()))
    return str(messages)
