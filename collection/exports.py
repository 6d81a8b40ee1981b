"""Streaming CSV exports: rows are read with .iterator() and written as they go, so an export
of millions of rows never holds them in memory."""

from __future__ import annotations

import csv

from django.http import StreamingHttpResponse


class _Echo:
    def write(self, value):
        return value


def csv_rows(queryset, fields: tuple[str, ...]):
    writer = csv.writer(_Echo())
    yield writer.writerow(fields)
    for row in queryset.order_by("pk").values_list(*fields).iterator(chunk_size=2000):
        yield writer.writerow(row)


def csv_response(queryset, fields: tuple[str, ...], *, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(csv_rows(queryset, fields), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
