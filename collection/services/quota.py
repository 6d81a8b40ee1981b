"""Call quotas (e.g. eBay's 5,000 calls a day): a ledger like money. A call is reserved before
it is made with one conditional UPDATE (`used + reserved + 1 <= limit`), so concurrent workers
never pass the quota; afterwards it is used. A reservation left by a dead worker is counted
as used by recovery (the call may have been made).

The day is the provider's (`source.quota_day()`), not ours: one ledger row per source and
provider day.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from collection.models import QuotaPeriod, RunUnit
from collection.sources import BaseSource, QuotaExhausted

from .errors import LeaseLost


def quota_period(*, source: BaseSource) -> QuotaPeriod:
    """Today's ledger row for the source (the provider's today), with the quota in force."""
    limit = source.daily_call_quota
    period, _ = QuotaPeriod.objects.get_or_create(source=source.key, day=source.quota_day(),
                                                  defaults={"limit": limit})
    if period.limit != limit:  # the operator changed the quota: it applies from now on
        QuotaPeriod.objects.filter(pk=period.pk).update(limit=max(limit, period.used + period.reserved))
        period.refresh_from_db()
    return period


def _unit_rows(unit_id: int, lease_owner: str | None):
    rows = RunUnit.objects.filter(pk=unit_id)
    return rows if lease_owner is None else rows.filter(lease_owner=lease_owner)


def quota_reserve(*, source: BaseSource, calls: int = 1, unit_id: int | None = None,
                  lease_owner: str | None = None) -> QuotaPeriod:
    """Reserve `calls` of today's quota (on the unit, when given). Raises QuotaExhausted, or
    LeaseLost when `lease_owner` no longer holds the unit; either way nothing is reserved."""
    period = quota_period(source=source)
    with transaction.atomic():
        if unit_id is not None and not _unit_rows(unit_id, lease_owner).update(
            quota_reserved=F("quota_reserved") + calls, quota_period=period
        ):
            raise LeaseLost(f"unit {unit_id} is no longer leased by {lease_owner}")
        if not QuotaPeriod.objects.filter(pk=period.pk, used__lte=F("limit") - F("reserved") - calls).update(
            reserved=F("reserved") + calls
        ):
            raise QuotaExhausted(f"the {source.key} call quota ({period.limit} a day) is used up",
                                 resets_at=source.quota_resets_at())
    return period


def quota_settle(*, period_id: int, reserved: int, used: int, unit_id: int | None = None,
                 lease_owner: str | None = None) -> None:
    """The reserved calls were made (`used` of them) or not: move them to used, release the
    rest. For a unit, only once: when the unit no longer holds them (recovery settled them, or
    `lease_owner` lost the lease) nothing changes."""
    used = min(used, reserved)
    with transaction.atomic():
        if unit_id is not None and not _unit_rows(unit_id, lease_owner).filter(quota_reserved__gte=reserved).update(
            quota_reserved=0, quota_period=None
        ):
            return
        QuotaPeriod.objects.filter(pk=period_id).update(reserved=F("reserved") - reserved, used=F("used") + used)


def quota_settle_unit(*, unit: RunUnit, used: int | None = None, lease_owner: str | None = None) -> None:
    """Settle whatever the unit holds; `used=None` counts it all as used (unknown outcome)."""
    if unit.quota_reserved and unit.quota_period_id:
        quota_settle(period_id=unit.quota_period_id, reserved=unit.quota_reserved,
                     used=unit.quota_reserved if used is None else used, unit_id=unit.pk, lease_owner=lease_owner)
        unit.quota_reserved, unit.quota_period_id = 0, None


def quota_exhaust(*, source: BaseSource) -> None:
    """The provider says today's quota is gone (eBay's 429 with errorId 2001): mark the rest of
    the day used, so no other worker calls again before the reset."""
    QuotaPeriod.objects.filter(source=source.key, day=source.quota_day()).update(used=F("limit") - F("reserved"))
