"""Reads shared by the API and the admin."""

from decimal import Decimal

from django.contrib.admin.utils import get_fields_from_path
from django.db import OperationalError, connection, connections, transaction
from django.db.models import Prefetch, Q, QuerySet, Value
from django.db.models.functions import Upper
from django.utils import timezone

from collection.models import (
    BudgetPeriod,
    CollectionRun,
    CollectionSettings,
    Offer,
    Product,
    ProductSearch,
    QuotaPeriod,
    RunProduct,
    RunSeller,
    RunUnit,
    Seller,
    UnitStatus,
)
from collection.services.source_state import source_for
from collection.sources import QuotaKind, UnknownSource

MIN_PART = 3  # a trigram index serves a part of at least 3 characters


# Columns that hold another in upper case, written by the indexer (services/search_index.py).
UPPER_COPIES = {(ProductSearch, "title_upper")}


def _contains(model, field: str, word: str) -> Q:
    """`field` holds `word`, whatever the case. A stored upper-case copy (a GeneratedField of
    UPPER(column), migration 0019, or a column of UPPER_COPIES) is compared as it is, with the
    word folded by the same database function: UPPER() on every row read was most of a search's
    cost."""
    found = get_fields_from_path(model, field)[-1]
    if (found.generated and isinstance(found.expression, Upper)) or (found.model, found.name) in UPPER_COPIES:
        return Q(**{f"{field}__contains": Upper(Value(word))})
    return Q(**{f"{field}__icontains": word})


def search(queryset: QuerySet, fields: tuple[str, ...] | list[str], text: str, *, min_part: int = MIN_PART) -> QuerySet:
    """What an operator types, word by word (every word must match): `=field` fields match the
    word exactly (an external id: an index lookup, case-sensitive as the provider's ids are);
    the others contain it, case-insensitively (a title or a name: through ProductSearch's
    `title_upper` and the sellers' `name_upper`, and their trigram indexes on PostgreSQL, see
    _contains; a product not indexed yet is not found). One word of MIN_PART
    characters or more is enough for the index to narrow the rows ("iphone 15"); when every word
    is shorter, they match exact fields only: no index can find a part that short, and it would
    read every row (a small table, such as the categories, passes `min_part=1`)."""
    words = text.split()
    partial = any(len(word) >= min_part for word in words)
    exact = [field[1:] for field in fields if field.startswith("=")]
    parts = [field for field in fields if not field.startswith("=")] if partial else []
    matches = []
    for word in words:
        match = Q()
        for field in exact:
            match |= Q(**{f"{field}__exact": word})
        for field in parts:
            match |= _contains(queryset.model, field, word)
        if not match:
            return queryset.none()
        matches.append(match)
    if len(words) > 1 and len(parts) == 1:
        # The same rows, said so that PostgreSQL can find them with one trigram-index scan for
        # all the words (which intersects their matches as it reads) instead of one bitmap a
        # word, each as large as the word is common, ANDed afterwards (two words in 3 % and 5 %
        # of 10 million titles: 1.7 s, the bitmaps too large to stay exact; this way 0.1 s):
        # every word in the one searched part, or an exact field equal to one of the words and
        # then each word matched somewhere.
        in_part = Q(*(_contains(queryset.model, parts[0], word) for word in words))
        any_exact = Q()
        for field in exact:
            any_exact |= Q(**{f"{field}__in": words})
        return queryset.filter(in_part | (any_exact & Q(*matches)) if exact else in_part)
    for match in matches:  # one filter a word: through a many-valued relation, any related row may match each
        queryset = queryset.filter(match)
    return queryset


def distinct_values(model, column: str, limit: int = 200) -> list:
    """A column's distinct values (for a filter's choices) without reading the table: on
    PostgreSQL a loose index scan (one index probe per value, through an index that leads with
    the column), elsewhere SELECT DISTINCT. At most `limit` values."""
    field = model._meta.get_field(column)
    if connection.vendor != "postgresql":
        return list(model.objects.order_by(column).values_list(column, flat=True).distinct()[:limit])
    table, col = connection.ops.quote_name(model._meta.db_table), connection.ops.quote_name(field.column)
    # Identifiers from the model's metadata, quoted; the one value is a parameter.
    first = f"SELECT {col}, 1 FROM {table} ORDER BY {col} LIMIT 1"  # noqa: S608
    after = f"SELECT {col} FROM {table} WHERE {col} > v.value ORDER BY {col} LIMIT 1"  # noqa: S608
    loop = "n + 1 FROM v WHERE v.value IS NOT NULL AND n < %s) SELECT value FROM v WHERE value IS NOT NULL"
    sql = f"WITH RECURSIVE v(value, n) AS (({first}) UNION ALL SELECT ({after}), {loop}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [limit])
        return [row[0] for row in cursor.fetchall()]


def count_within(queryset: QuerySet, *, cap: int, budget_ms: int) -> int | None:
    """How many rows match, up to `cap` + 1 (a COUNT over a LIMIT, without the page's order, so
    the planner may take any matching rows from the cheapest index); None when PostgreSQL
    cannot count them within `budget_ms` (its statement timeout, for this statement only:
    the setting is restored, or undone with the savepoint when the count is cancelled).
    Elsewhere (SQLite, a small database) the count always finishes."""
    rows = queryset.order_by()[: cap + 1]
    db = connections[queryset.db]
    if db.vendor != "postgresql":
        return rows.count()
    nested = db.in_atomic_block or not db.get_autocommit()  # SET LOCAL outlives this block: restore it
    try:
        with transaction.atomic(using=queryset.db), db.cursor() as cursor:
            cursor.execute(  # the setting before, then the budget (OFFSET 0: the subquery first)
                "SELECT before, set_config('statement_timeout', %s, true) "
                "FROM (SELECT current_setting('statement_timeout') AS before OFFSET 0) setting",
                [f"{max(budget_ms, 1)}ms"],
            )
            before = cursor.fetchone()[0]
            count = rows.count()
            if nested:
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [before])
            return count
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) == "57014":  # query_canceled: the budget ran out
            return None
        raise


def runs_with_categories() -> QuerySet[CollectionRun]:
    """Runs with their creator and their categories' ids in a constant number of queries."""
    return CollectionRun.objects.select_related("created_by").prefetch_related(
        Prefetch("units", queryset=RunUnit.objects.only("id", "run_id", "category_id").order_by("id"),
                 to_attr="unit_list")
    )


def seen_in_run(queryset: QuerySet, run_id: int) -> QuerySet:
    """Sellers, products or offers that run `run_id`'s pages returned — "seen in run", not only
    first seen there (offers: those of the products it saw). Through the run's rows keyed by
    (run, id): PostgreSQL walks them in id order, so a page costs the same whatever the run's
    size."""
    model = queryset.model
    products = RunProduct.objects.filter(run_id=run_id).values("product_id")
    if model is Seller:
        return queryset.filter(id__in=RunSeller.objects.filter(run_id=run_id).values("seller_id"))
    if model is Product:
        return queryset.filter(id__in=products)
    if model is Offer:
        return queryset.filter(product_id__in=products)
    raise TypeError(f"{model.__name__} is not seen in runs")


def seen_counts(run_id: int) -> dict[str, int]:
    """How many sellers and products a run has seen (each once)."""
    # The run's own rows, read from their key alone (2 ms for 20,000; through the products
    # themselves 114 ms at 10 M products, on a page that refreshes itself). A product or seller
    # deleted since (the admin allows it) is still counted, and no longer listed.
    return {"sellers": RunSeller.objects.filter(run_id=run_id).count(),
            "products": RunProduct.objects.filter(run_id=run_id).count()}


def month_budget() -> dict:
    """This month's ledger: spent, reserved and the cap in force."""
    period = BudgetPeriod.objects.filter(month=timezone.now().date().replace(day=1)).first()
    cap = period.cap if period else CollectionSettings.load().monthly_budget_cap
    return {"spent": period.spent if period else Decimal(0), "reserved": period.reserved if period else Decimal(0),
            "cap": cap}


def source_quota(key: str) -> str:
    """A source's quota situation in a sentence, without calling the provider."""
    try:
        source = source_for(key)
    except UnknownSource:
        return f"unknown source {key!r}"
    if source.missing_configuration():
        return source.missing_configuration()
    if source.quota_kind == QuotaKind.DAILY_CALLS:
        period = QuotaPeriod.objects.filter(source=key, day=source.quota_day()).first()
        used = (period.used + period.reserved) if period else 0
        limit = period.limit if period else source.daily_call_quota
        resets = source.quota_resets_at()
        return f"{used:,} of {limit:,} calls today; resets {resets:%Y-%m-%d %H:%M} UTC"
    if source.quota_kind == QuotaKind.TOKEN_BUCKET:
        bucket = source.bucket_status()
        if bucket is None:
            return "token bucket: not called yet"
        return f"token bucket: {bucket['tokens_left']:,} tokens left, refills {bucket['refill_rate']:,} a minute"
    return "no call quota"


def stalled_units() -> QuerySet[RunUnit]:
    """Units whose worker stopped checkpointing: the lease expired and recovery has not taken
    them over yet."""
    return RunUnit.objects.filter(status=UnitStatus.RUNNING, lease_expires_at__lt=timezone.now()).select_related(
        "run", "category")
