"""The budget ledger: reserve before you spend, capture what was spent, release the rest.

Every reservation passes through two ledgers, the run and the calendar month, each with one
conditional UPDATE (`… WHERE cap - spent - reserved - amount >= 0`). The database evaluates
the condition on the row it locks for the update, so spent + reserved never passes a cap,
whatever the number of concurrent workers. Lock order everywhere: unit, month, run.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.db import transaction
from django.db.models import DecimalField, F, Value
from django.db.models.functions import Round
from django.db.models.lookups import GreaterThanOrEqual
from django.utils import timezone

from collection.models import MONEY, BudgetPeriod, CollectionRun, CollectionSettings, RunStatus, RunUnit

from .errors import BudgetExceeded

ZERO = Decimal("0")


def _money(amount: Decimal) -> Value:
    return Value(amount, output_field=DecimalField(**MONEY))


def fits(cap_field: str, amount: Decimal) -> GreaterThanOrEqual:
    """`cap - spent - reserved - amount >= 0`, rounded so SQLite's floats compare exactly."""
    headroom = F(cap_field) - F("spent") - F("reserved") - _money(amount)
    return GreaterThanOrEqual(Round(headroom, 6), 0)


def current_month(today: date | None = None) -> date:
    today = today or timezone.localdate()
    return today.replace(day=1)


def period_current(*, settings: CollectionSettings | None = None) -> BudgetPeriod:
    """This month's ledger row, created with the monthly cap in force."""
    month = current_month()
    period = BudgetPeriod.objects.filter(month=month).first()
    if period is None:
        settings = settings or CollectionSettings.load()
        period, _ = BudgetPeriod.objects.get_or_create(month=month, defaults={"cap": settings.monthly_budget_cap})
    return period


def budget_reserve(*, unit_id: int, run_id: int, amount: Decimal) -> None:
    """Reserve `amount` for the unit's next page on the month and on the run (which must be
    running). Raises BudgetExceeded (scope "month" or "run") and reserves nothing if either
    cap would be passed."""
    period = period_current()
    with transaction.atomic():
        # The month is kept on the unit, so capture hits the same ledger row even when the
        # page straddles midnight at the end of a month.
        RunUnit.objects.filter(pk=unit_id).update(reserved=F("reserved") + _money(amount), reserved_period=period)
        if not BudgetPeriod.objects.filter(fits("cap", amount), pk=period.pk).update(
            reserved=F("reserved") + _money(amount)
        ):
            raise BudgetExceeded(
                f"the next page may cost up to {amount}, more than is left of this month's budget",
                scope="month", needed=amount,
            )
        if not CollectionRun.objects.filter(fits("budget_cap", amount), pk=run_id, status=RunStatus.RUNNING).update(
            reserved=F("reserved") + _money(amount)
        ):
            raise BudgetExceeded(
                f"the next page may cost up to {amount}, more than is left of the run's cap",
                scope="run", needed=amount,
            )


def budget_settle(*, unit: RunUnit, spent: Decimal) -> Decimal:
    """Turn the unit's whole reservation into `spent` (capped at the reservation) plus a release
    of the rest, on the unit, its month and its run. Call inside the page's transaction.
    Returns what was counted as spent."""
    reserved = unit.reserved
    spent = min(max(spent, ZERO), reserved)
    if reserved == ZERO:
        return ZERO
    RunUnit.objects.filter(pk=unit.pk).update(reserved=F("reserved") - _money(reserved), cost=F("cost") + _money(spent))
    BudgetPeriod.objects.filter(pk=unit.reserved_period_id).update(
        reserved=F("reserved") - _money(reserved), spent=F("spent") + _money(spent)
    )
    CollectionRun.objects.filter(pk=unit.run_id).update(
        reserved=F("reserved") - _money(reserved), spent=F("spent") + _money(spent)
    )
    unit.reserved = ZERO
    unit.cost += spent
    return spent


def budget_capture(*, unit: RunUnit, actual: Decimal) -> Decimal:
    """The page was fetched and cost `actual`: spend it and release the rest."""
    return budget_settle(unit=unit, spent=actual)


def budget_release(*, unit: RunUnit) -> None:
    """Nothing was spent of the unit's reservation (the page was never requested)."""
    budget_settle(unit=unit, spent=ZERO)
