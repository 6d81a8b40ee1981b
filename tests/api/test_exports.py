"""The CSV exports' two writers: PostgreSQL's COPY and Python's csv writer give the same cells for
every column of every export, awkward values included; an export left early frees its connection."""

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError

from collection.exports import CHUNK, OFFER_FIELDS, PRODUCT_FIELDS, SELLER_FIELDS, CsvExport, csv_response
from collection.models import Category, Offer, Product, ProductSeen, Seller
from tests.conftest import postgres_only

pytestmark = pytest.mark.django_db

# What marketplaces send: formula starts (each of OWASP's), separators, quotes, line breaks,
# characters beyond ASCII, blanks and leading spaces.
TEXTS = ["=1+2", "+44 lamp", "-5 %", "@user", "\tTabbed", "\rReturned", "comma, inside", 'a "quoted" word',
         "two\nlines", "crlf\r\nline", "Émile's café — 😀", "", " leading space", "'already quoted", "plain"]
WHEN = [datetime(2026, 12, 3, 20, 4, 48, tzinfo=UTC), datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)]


def awkward_rows() -> None:
    category = Category.objects.create(platform="demo", external_id="=cat", name="Cat")
    sellers = Seller.objects.bulk_create(
        Seller(platform="demo", external_id=f"s{i}", name=text, feedback_score=[None, 0, -1, 10**9][i % 4],
               feedback_percent=[None, Decimal("99.90"), Decimal("100.00"), Decimal("0.05")][i % 4],
               account_type="", country="DE", first_seen_at=WHEN[i % 3], last_seen_at=WHEN[(i + 1) % 3])
        for i, text in enumerate(TEXTS))
    products = Product.objects.bulk_create(
        Product(platform="demo", external_id=f"-p{i}" if i % 2 else f"p{i}", title=text or "untitled",
                price=[None, Decimal("0.00"), Decimal("12.50"), Decimal("999999999999.99")][i % 4],
                currency="EUR", url=f"https://example.com/{i}?a=1,b=2", condition=text,
                seller=sellers[i] if i % 3 else None, category=category if i % 2 else None,
                legacy_id="", source_category_ids="1,2", first_seen_at=WHEN[i % 3])
        for i, text in enumerate(TEXTS))
    ProductSeen.objects.bulk_create(ProductSeen(product=p, last_seen_at=WHEN[(i + 2) % 3])
                                    for i, p in enumerate(products) if i % 4)  # some without: first sighting
    Offer.objects.bulk_create(
        Offer(product=p, seller=sellers[(i + 1) % len(sellers)], condition=TEXTS[-i], price=p.price,
              currency="EUR", fulfilled_by_platform=[None, True, False][i % 3],
              first_seen_at=WHEN[i % 3], last_seen_at=WHEN[(i + 1) % 3])
        for i, p in enumerate(products))


def parsed(export: CsvExport) -> list[list[str]]:
    return list(csv.reader(io.StringIO("".join(export), newline="")))


@postgres_only
@pytest.mark.parametrize(("model", "fields"), [(Seller, SELLER_FIELDS), (Product, PRODUCT_FIELDS),
                                               (Offer, OFFER_FIELDS)], ids=["sellers", "products", "offers"])
def test_the_database_writes_the_cells_python_writes(model, fields):
    awkward_rows()
    copied, written = CsvExport(model.objects.all(), fields), CsvExport(model.objects.all(), fields, copy=False)
    assert copied.copy and not written.copy
    rows = parsed(copied)
    assert rows == parsed(written)
    assert copied.rows == written.rows == model.objects.count() == len(rows) - 1 == len(TEXTS)
    cells = [cell for row in rows[1:] for cell in row]
    assert "'=1+2" in cells and "'-5 %" in cells and "'\tTabbed" in cells and "'already quoted" in cells
    assert "2026-12-03 20:04:48+00:00" in cells and "2026-01-02 03:04:05.120000+00:00" in cells


def many_products(count: int = 2_000) -> None:
    Product.objects.bulk_create(Product(platform="demo", external_id=f"p{i}", title="lamp " * 60,
                                        first_seen_at=WHEN[0]) for i in range(count))


def copies_under_way() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%%' AND state = 'active'")
        return cursor.fetchone()[0]


@postgres_only
@pytest.mark.django_db(transaction=True)  # autocommit, as requests and commands run: COPY is its own transaction
def test_an_export_left_early_cancels_its_copy_and_frees_the_connection():
    many_products()
    export = iter(CsvExport(Product.objects.all(), PRODUCT_FIELDS))
    next(export)  # the header
    first = next(export)
    assert CHUNK <= len(first.encode()) < CHUNK + 1_000 and 0 < first.count("\n") < 2_000
    export.close()  # the client went away
    assert Product.objects.count() == 2_000  # the connection answers
    assert copies_under_way() == 0


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_download_left_early_ends_its_copy_when_the_response_closes():
    many_products()
    response = csv_response(Product.objects.all(), PRODUCT_FIELDS, filename="products.csv")
    chunks = iter(response.streaming_content)
    next(chunks), next(chunks)
    response.close()  # what the WSGI server does when the client goes
    assert list(chunks) == []  # the stream ended there, its COPY with it
    assert copies_under_way() == 0 and Product.objects.count() == 2_000


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_an_export_left_early_inside_atomic_rolls_the_block_back():
    """The cancelled COPY aborted the block's transaction: Django says so, never commits."""
    many_products()
    with transaction.atomic():
        Product.objects.filter(external_id="p0").update(title="changed")
        export = iter(CsvExport(Product.objects.all(), PRODUCT_FIELDS))
        next(export), next(export)
        export.close()
        with pytest.raises(TransactionManagementError):
            Product.objects.count()
    assert Product.objects.get(external_id="p0").title.startswith("lamp")


def test_an_export_of_nothing_is_its_header():
    for queryset in (Product.objects.none(), Product.objects.filter(pk__in=[])):
        export = CsvExport(queryset, PRODUCT_FIELDS)
        assert "".join(export).splitlines() == [",".join(f if isinstance(f, str) else f[0] for f in PRODUCT_FIELDS)]
        assert export.rows == 0


def test_a_distinct_export_has_the_export_columns_only():
    """DISTINCT selects its ORDER BY columns too: they are not exported."""
    awkward_rows()
    rows = parsed(CsvExport(Seller.objects.distinct().order_by("-first_seen_at"), SELLER_FIELDS))
    assert {len(row) for row in rows} == {len(SELLER_FIELDS)} and len(rows) == len(TEXTS) + 1


def test_every_row_arrives_in_chunks_of_bounded_size():
    """On either database: the rows in order, each chunk about CHUNK long (flat memory)."""
    Product.objects.bulk_create(Product(platform="demo", external_id=f"p{i}", title=f"lamp {i} " * 30,
                                        first_seen_at=WHEN[0]) for i in range(1_500))
    export = CsvExport(Product.objects.all(), PRODUCT_FIELDS)
    chunks = list(export)
    rows = list(csv.DictReader(io.StringIO("".join(chunks), newline="")))
    assert [row["external_id"] for row in rows] == [f"p{i}" for i in range(1_500)] and export.rows == 1_500
    if export.copy:
        assert len(chunks) > 3 and max(len(chunk.encode()) for chunk in chunks) < CHUNK + 1_000
