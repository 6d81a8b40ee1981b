"""One way to page through every list: a cursor (`?cursor=` from `next`/`previous`) and
`?page_size=`. A cursor keeps its place while rows are added, costs the same on page 1 and
page 10,000 (no OFFSET, no COUNT), and follows the list's ordering (`?ordering=` where offered)."""

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination

MAX_PAGE_SIZE = 1000


class Cursor(CursorPagination):
    ordering = "id"  # lists without `?ordering=`; views with an OrderingFilter use theirs
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    invalid_cursor_message = "Invalid cursor: follow `next` or `previous` as given."

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationError({self.page_size_query_param: [
                f"A whole number from 1 to {self.max_page_size}."]})
        return int(raw)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = f"Results per page: 1 to {self.max_page_size} (default {self.page_size})."
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
        return parameters


    def paginate_queryset(self, queryset, request, view=None):
        """A cursor is a link to a page: one that does not decode, or whose position does not fit
        the ordering (e.g. a text position on ids), leads nowhere: 404 `invalid_cursor`, as DRF
        answers the first case, never a server error."""
        try:
            return super().paginate_queryset(queryset, request, view)
        except (ValueError, TypeError, DjangoValidationError, NotFound):
            raise NotFound(self.invalid_cursor_message, code="invalid_cursor") from None
