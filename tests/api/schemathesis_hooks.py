"""Lets schemathesis validate the CSV exports against their schema (a string): the body must be
UTF-8 CSV whose first row is a header."""

import csv
import io

import schemathesis


@schemathesis.deserializer("text/csv")
def csv_text(ctx, response):
    text = response.content.decode("utf-8")
    header = next(csv.reader(io.StringIO(text)), None)
    if not header or not all(header):
        raise ValueError(f"CSV without a header row: {text[:80]!r}")
    return text
