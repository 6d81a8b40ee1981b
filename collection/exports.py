"""Streaming CSV exports, of any number of rows in flat memory: on PostgreSQL the database writes
the CSV (COPY … TO STDOUT, read as it comes: ten times Python's pace), elsewhere Python's csv
writer over the rows read with .iterator(). Both give the same cells (tests/api/test_exports.py)."""

from __future__ import annotations

import csv

from django.db import connections
from django.db.models import F, Func, OuterRef, Subquery, TextField
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

CHUNK = 64 * 1024  # bytes of CSV the database's rows are gathered into before they are passed on


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


class CsvCell(Func):
    """A column as PostgreSQL's COPY writes the cell Python's csv writer would write from the
    value Django reads: texts through safe_cell, times as str() of the UTC datetime
    ("2026-12-03 20:04:48.123456+00:00", no fraction when it is zero), booleans True/False;
    numbers as they are (numeric's text is Decimal's str()). A column of another kind is refused,
    not exported in a form the other path would not give."""

    output_field = TextField()
    # What a cell costs was measured with psql: ascii() tests the first character without
    # cutting the text as left(…, 1) does; a zero fraction of a second is cut by replace(), not
    # by a regular expression (which cost as much as the rest of the row). A column is named
    # once where it may be an expression: the last sighting's subquery would run again.
    TEMPLATES = {
        "text": "CASE WHEN ascii({0}) IN (61, 43, 45, 64, 9, 13) THEN '''' || {0} ELSE {0} END",  # = + - @ tab CR
        "datetime": "replace(to_char({0} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US\"+00:00\"'), '.000000+', '+')",
        "boolean": "CASE WHEN {0} THEN 'True' WHEN NOT {0} THEN 'False' END",
        "number": "{0}",
    }
    KINDS = {"CharField": "text", "TextField": "text", "URLField": "text", "DateTimeField": "datetime",
             "BooleanField": "boolean", **dict.fromkeys(
                 ("AutoField", "BigAutoField", "IntegerField", "BigIntegerField", "PositiveIntegerField",
                  "SmallIntegerField", "PositiveSmallIntegerField", "DecimalField", "ForeignKey"), "number")}

    def as_sql(self, compiler, connection, **extra_context):
        (source,) = self.get_source_expressions()
        kind = source.output_field.get_internal_type()
        if kind not in self.KINDS:
            raise TypeError(f"CSV export: no cell form for a {kind} column")
        sql, params = compiler.compile(source)
        template = self.TEMPLATES[self.KINDS[kind]]
        return template.format(f"({sql})"), tuple(params) * template.count("{0}")


def _writer():
    """Lines end with a line feed alone, as COPY ends them (it cannot end them otherwise)."""
    return csv.writer(_Echo(), lineterminator="\n")


def _columns(fields: tuple) -> list[tuple[str, object]]:
    return [(field, F(field)) if isinstance(field, str) else field for field in fields]


class CsvExport:
    """The CSV of a queryset's rows (header first) as text, in chunks: iterate it once.
    In the queryset's order (the list's `?ordering=`), by id when it has none. `rows` then
    says how many rows it gave, the header not counted. `copy`: whether the database writes
    it (default: on PostgreSQL; False there compares the two, as the tests and bench/ do)."""

    def __init__(self, queryset, fields: tuple, *, copy: bool | None = None):
        self.queryset = queryset if queryset.query.order_by else queryset.order_by("pk")
        self.columns = _columns(fields)
        self.copy = connections[self.queryset.db].vendor == "postgresql" if copy is None else copy
        self.rows = 0

    def __iter__(self):
        yield _writer().writerow([name for name, _ in self.columns])
        yield from self._copied() if self.copy else self._written()

    def _written(self):
        writer = _writer()
        computed = {f"export_{i}": expression for i, (_, expression) in enumerate(self.columns)}
        for row in self.queryset.annotate(**computed).values_list(*computed).iterator(chunk_size=2000):
            self.rows += 1
            yield writer.writerow([safe_cell(value) for value in row])

    def _copied(self):
        cells = {f"export_{i}": CsvCell(expression) for i, (_, expression) in enumerate(self.columns)}
        query = self.queryset.annotate(**cells).values_list(*cells).query
        connection = connections[self.queryset.db]
        # Not elided when it can match nothing (an empty page's `pk__in=[]`, `.none()`): COPY
        # then writes no rows, where Django would raise EmptyResultSet and run no query.
        compiler = query.get_compiler(connection=connection, elide_empty=False)
        sql, params = compiler.as_sql()
        if compiler.has_extra_select:  # DISTINCT adds its ORDER BY columns, which COPY would write
            yield from self._written()
            return
        statement = f"COPY ({sql}) TO STDOUT (FORMAT csv)"
        try:
            with (connection.cursor() as cursor, connection.wrap_database_errors,
                  cursor.cursor.copy(statement, params) as copy):
                chunk = bytearray()
                for data in copy:
                    chunk += data
                    self.rows += 1  # a row a block: libpq hands COPY's data over row by row
                    if len(chunk) >= CHUNK:
                        yield chunk.decode()
                        chunk.clear()
                if chunk:
                    yield chunk.decode()
        except BaseException:
            # Left early (a client gone: GeneratorExit) or failed: psycopg cancels the COPY and
            # reads what was under way. In autocommit, as requests and commands run, that ends
            # the COPY's own transaction only; inside atomic() it aborted the caller's, which
            # Django must then roll back, not commit as if nothing happened.
            if connection.in_atomic_block:
                connection.needs_rollback = True
            raise


def csv_response(queryset, fields: tuple, *, filename: str) -> StreamingHttpResponse:
    # The generator, not the export: the response closes it when the client goes, which ends the COPY.
    response = StreamingHttpResponse(iter(CsvExport(queryset, fields)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
