"""The OpenAPI schema tells the whole truth: besides its success, every operation documents the
errors it can answer, each with the one error body (collection/api/errors.py)."""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse

from .serializers import ErrorSerializer

ERROR_MEDIA = ["application/json"]
EVERYWHERE = {
    400: "Refused input: a field, or a query parameter that is unknown or malformed (`errors` names it).",
    401: "No valid credentials (a token or a session).",
    403: "The user lacks the permission `collection.automation`.",
    404: "No such object, or no such format (`?format=`).",
    406: "The Accept header asks for a format this endpoint does not produce.",
    429: "Too many requests; `Retry-After` says when to try again.",
}
WITH_BODY = {415: "The request body is not JSON (`Content-Type: application/json`)."}
CONFLICTS = {409: "The run's state does not allow this, or an Idempotency-Key was reused with another body."}


class CollectionAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for response in responses.values():
            if "text/csv" in response.get("content", {}):  # a streamed export, not the JSON page
                response["content"]["text/csv"] = {"schema": {
                    "type": "string", "description": "CSV: a header row, then one row per object (`?format=csv`)."}}
        for status_code, description in self._errors().items():
            if str(status_code) not in responses:
                response = OpenApiResponse(ErrorSerializer, description=description)
                responses[str(status_code)] = self._get_response_for_code(response, str(status_code), ERROR_MEDIA)
        return responses

    def _errors(self) -> dict[int, str]:
        errors = dict(EVERYWHERE)
        if self.method in ("POST", "PUT", "PATCH"):
            errors |= WITH_BODY
        if getattr(self.view, "action", None) in getattr(self.view, "conflicting_actions", ()):
            errors |= CONFLICTS
        return errors
