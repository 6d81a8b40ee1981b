"""Reads shared by the API and the admin."""

from decimal import Decimal

from django.db import connection
from django.db.models import Prefetch, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from collection.models import (
    BudgetPeriod,
    CollectionRun,
    CollectionSettings,
    Offer,
    Product,
    QuotaPeriod,
    RunPage,
    RunUnit,
    Seller,
    UnitStatus,
)
from collection.services.source_state import source_for
from collection.sources import QuotaKind, UnknownSource


def runs_with_categories() -> QuerySet[CollectionRun]:
    """Runs with their creator and their categories' ids in a constant number of queries."""
    return CollectionRun.objects.select_related("created_by").prefetch_related(
        Prefetch("units", queryset=RunUnit.objects.only("id", "run_id", "category_id").order_by("id"),
                 to_attr="unit_list")
    )


def _seen_ids(run_id: int, column: str) -> RawSQL:
    """The external ids in the run's page rows' `column` (products or sellers), as a subquery.
    Only constant identifiers are interpolated; the run id is a parameter."""
    assert column in ("products", "sellers")
    table = connection.ops.quote_name(RunPage._meta.db_table)
    if connection.vendor == "postgresql":
        sql = f"SELECT jsonb_array_elements_text({column}) FROM {table} WHERE run_id = %s"  # noqa: S608
    else:
        sql = f"SELECT j.value FROM {table}, json_each({table}.{column}) AS j WHERE {table}.run_id = %s"  # noqa: S608
    return RawSQL(sql, [run_id])  # noqa: S611


def _platform_of(run_id: int) -> str | None:
    source = CollectionRun.objects.filter(pk=run_id).values_list("source", flat=True).first()
    if source is None:
        return None
    try:
        return source_for(source).platform
    except UnknownSource:
        return None


def seen_in_run(queryset: QuerySet, run_id: int) -> QuerySet:
    """Sellers, products or offers that run `run_id`'s pages returned — "seen in run", not only
    first seen there (offers: those of the products it saw)."""
    platform = _platform_of(run_id)
    if platform is None:
        return queryset.none()
    model = queryset.model
    if model is Seller:
        return queryset.filter(platform=platform, external_id__in=_seen_ids(run_id, "sellers"))
    if model is Product:
        return queryset.filter(platform=platform, external_id__in=_seen_ids(run_id, "products"))
    if model is Offer:
        return queryset.filter(product__platform=platform, product__external_id__in=_seen_ids(run_id, "products"))
    raise TypeError(f"{model.__name__} is not seen in runs")


def seen_counts(run_id: int) -> dict[str, int]:
    """How many sellers and products a run has seen (each once)."""
    return {"sellers": seen_in_run(Seller.objects.all(), run_id).count(),
            "products": seen_in_run(Product.objects.all(), run_id).count()}


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
