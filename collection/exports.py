"""Streaming CSV exports: rows are read with .iterator() and written as they go, so an export
of millions of rows never holds them in memory."""

from __future__ import annotations

import csv

from django.db.models import F, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import StreamingHttpResponse

from collection.models import ProductSeen

# Product.last_seen_at, by key for each row exported (a join can be planned as a read of the
# whole table, however few rows the export has); a product stored without a row: its first sighting.
LAST_SEEN = Coalesce(Subquery(ProductSeen.objects.filter(product=OuterRef("pk")).values("last_seen_at")),
                     F("first_seen_at"))
# The columns of every export (admin action, API ?format=csv, collection_export): a field's path,
# or a column's name and the expression that gives it.
SELLER_FIELDS = ("id", "platform", "external_id", "name", "feedback_score", "feedback_percent", "account_type",
                 "country", "times_seen", "first_seen_at", "last_seen_at", "first_seen_run_id")
PRODUCT_FIELDS = ("id", "platform", "external_id", "legacy_id", "title", "price", "currency", "url", "condition",
                  "buying_options", "location_country", "source_category_ids", "seller__external_id",
                  "category__external_id", "first_seen_at",
                  ("last_seen_at", LAST_SEEN),
                  "first_seen_run_id")
OFFER_FIELDS = ("id", "product__platform", "product__external_id", "product__title", "seller__external_id",
                "seller__name", "condition", "price", "currency", "fulfilled_by_platform", "first_seen_at",
                "last_seen_at", "last_seen_run_id")


class _Echo:
    def write(self, value):
        return value


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """A text cell a spreadsheet would read as a formula (OWASP's CSV injection rule: it starts
    with =, +, -, @, tab or carriage return) is prefixed with a quote, so it stays text. Titles
    and names come from marketplaces: untrusted."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_rows(queryset, fields: tuple):
    """In the queryset's order (the list's `?ordering=`), by id when it has none."""
    writer = csv.writer(_Echo())
    yield writer.writerow([field if isinstance(field, str) else field[0] for field in fields])
    rows = queryset if queryset.query.order_by else queryset.order_by("pk")
    computed = {f"export_{field[0]}": field[1] for field in fields if not isinstance(field, str)}
    paths = [field if isinstance(field, str) else f"export_{field[0]}" for field in fields]
    for row in rows.annotate(**computed).values_list(*paths).iterator(chunk_size=2000):
        yield writer.writerow([safe_cell(value) for value in row])


def csv_response(queryset, fields: tuple, *, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(csv_rows(queryset, fields), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
