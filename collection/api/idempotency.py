"""Idempotency-Key for POST runs/: a retried request gets the first response and creates
nothing new. Keys are per user; reusing a key with a different body is refused."""

from __future__ import annotations

import hashlib
import json
import re

from django.db import IntegrityError, transaction
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response

from collection.models import IdempotencyKey

HEADER = "Idempotency-Key"
KEY_PATTERN = r"[!-~]|[!-~][ -~]{0,253}[!-~]"  # 1 to 255 printable ASCII, no space at either end


class KeyReused(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "idempotency_key_reused"
    default_detail = "This Idempotency-Key was used with a different request body."


class KeyInvalid(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid"
    default_detail = {"Idempotency-Key": ["Must be 1 to 255 printable ASCII characters."]}


def fingerprint(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def replay_or_run(request, create, *, prepare=None, location=None) -> Response:
    """Run `create()` (which returns a Response) once per (user, key); replay it afterwards.
    `prepare()` runs first, outside the transaction that records the key: work whose effects
    must survive a refusal (e.g. probes the provider charged for). `location(data)` gives a
    replayed 201 its Location header."""
    key = request.headers.get(HEADER)
    if key is None:
        if prepare is not None:
            prepare()
        return create()
    if not re.fullmatch(KEY_PATTERN, key):
        raise KeyInvalid
    body = fingerprint(request.data)
    for _ in range(2):
        found = IdempotencyKey.objects.filter(user=request.user, key=key).first()
        if found is not None:
            if found.fingerprint != body:
                raise KeyReused
            headers = {"Idempotent-Replayed": "true"}
            if found.status_code == status.HTTP_201_CREATED and location is not None:
                headers["Location"] = location(found.response)
            return Response(found.response, status=found.status_code, headers=headers)
        if prepare is not None:
            prepare()
            prepare = None
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(user=request.user, key=key, fingerprint=body)
                response = create()
                record.status_code, record.response = response.status_code, response.data
                record.save(update_fields=["status_code", "response"])
                return response
        except IntegrityError:
            continue  # a concurrent request with the same key won: replay its response
    raise KeyReused
