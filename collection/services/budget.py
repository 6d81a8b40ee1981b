"""The budget ledger: reserve before you spend, capture what was spent, release the rest.

Every reservation passes through two ledgers, the run and the calendar month, each with one
conditional UPDATE (`… WHERE cap - spent - reserved - amount >= 0`). The database evaluates
the condition on the row it locks for the update, so spent + reserved never passes a cap,
whatever the number of concurrent workers. Lock order everywhere: unit, month, run.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from functools import cache

from django.db import connection, transaction
from django.db.models import DecimalField, F, Value
from django.db.models.functions import Round
from django.db.models.lookups import GreaterThanOrEqual
from django.utils import timezone

from collection.models import BudgetPeriod, CollectionRun, CollectionSettings, RunStatus, RunUnit, UnitStatus
from collection.money import MONEY

from .errors import BudgetExceeded, LeaseLost

ZERO = Decimal("0")


def _money(amount: Decimal) -> Value:
    return Value(amount, output_field=DecimalField(**MONEY))


def _plus(field: str, amount: Decimal):
    """`field + amount` for a ledger column. On SQLite, where NUMERIC is a float, the sum is
    rounded, so repeated reserve/release never leaves 0.01 - 0.01 = -1.7e-18 behind (which the
    `reserved >= 0` constraints would reject)."""
    total = F(field) + _money(amount)
    return Round(total, 6) if connection.vendor == "sqlite" else total


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


def budget_reserve(*, unit_id: int, run_id: int, amount: Decimal, lease_owner: str | None = None) -> int:
    """Reserve `amount` for the unit's next page on the month and on the run (which must be
    running). Raises BudgetExceeded (scope "month" or "run") and reserves nothing if either
    cap would be passed; with `lease_owner`, raises LeaseLost and reserves nothing when that
    worker no longer holds the unit. Returns the id of the month's ledger row."""
    period = period_current().pk
    unit = RunUnit.objects.filter(pk=unit_id)
    if lease_owner is not None:
        unit = unit.filter(lease_owner=lease_owner, status=UnitStatus.RUNNING)
    with transaction.atomic():
        # The month is kept on the unit, so capture hits the same ledger row even when the
        # page straddles midnight at the end of a month.
        if not unit.update(reserved=_plus("reserved", amount), reserved_period_id=period):
            raise LeaseLost(f"unit {unit_id} is no longer leased by {lease_owner}")
        if not BudgetPeriod.objects.filter(fits("cap", amount), pk=period).update(
            reserved=_plus("reserved", amount)
        ):
            raise BudgetExceeded(
                f"the next page may cost up to {amount}, more than is left of this month's budget",
                scope="month", needed=amount,
            )
        if not CollectionRun.objects.filter(fits("budget_cap", amount), pk=run_id, status=RunStatus.RUNNING).update(
            reserved=_plus("reserved", amount)
        ):
            raise BudgetExceeded(
                f"the next page may cost up to {amount}, more than is left of the run's cap",
                scope="run", needed=amount,
            )
    return period


def budget_settle(*, unit: RunUnit, spent: Decimal, unit_changes: dict | None = None,
                  run_changes: dict | None = None) -> Decimal:
    """Turn the unit's whole reservation into `spent` (at most the reservation) plus a release
    of the rest, on the unit, its month and its run — together with any other changes the
    caller makes to the unit and the run, in one UPDATE each. Call inside the page's
    transaction, with the unit row locked. Returns what was counted as spent."""
    reserved = unit.reserved
    spent = min(max(spent, ZERO), reserved)
    unit_changes = dict(unit_changes or {})
    run_changes = dict(run_changes or {})
    if reserved:
        unit_changes.update(reserved=_plus("reserved", -reserved), cost=_plus("cost", spent))
        run_changes.update(reserved=_plus("reserved", -reserved), spent=_plus("spent", spent))
        BudgetPeriod.objects.filter(pk=unit.reserved_period_id).update(
            reserved=_plus("reserved", -reserved), spent=_plus("spent", spent)
        )
    if unit_changes:
        RunUnit.objects.filter(pk=unit.pk).update(**unit_changes)
    if run_changes:
        CollectionRun.objects.filter(pk=unit.run_id).update(**run_changes)
    unit.reserved = ZERO
    unit.cost += spent
    return spent


def _ledger_sql(model, cap: str, extra: tuple[str, ...] = (), status: bool = False) -> str:
    """UPDATE <ledger> SET spent = spent + %s, reserved = reserved + %s[, counter = counter + %s…]
    WHERE id = %s [AND status = %s] AND ROUND(cap - spent - reserved - %s, 6) >= 0 — the same
    condition as `fits()`. Written out because it runs twice per page and the ORM's compile
    cost there is measurable (bench/)."""
    table = connection.ops.quote_name(model._meta.db_table)
    money = "ROUND({0} + %s, 6)" if connection.vendor == "sqlite" else "{0} + %s"  # see _plus()
    sets = ", ".join([*(f"{name} = {money.format(name)}" for name in ("spent", "reserved")),
                      *(f"{name} = {name} + %s" for name in extra)])
    where = "id = %s" + (" AND status = %s" if status else "")
    return f"UPDATE {table} SET {sets} WHERE {where} AND ROUND({cap} - spent - reserved - %s, 6) >= 0"  # noqa: S608


RUN_COUNTERS = ("pages_done", "items_done", "sellers_new", "units_done")


def budget_capture_and_reserve(*, run_id: int, period_id: int, reserved: Decimal, spent: Decimal,
                               next_amount: Decimal | None, counters: dict[str, int]) -> bool:
    """The page path's ledger step, inside the checkpoint's transaction: capture `spent` of the
    page's `reserved` amount on the month and the run, release the rest, add the run's page
    `counters` — and, when `next_amount` is given, reserve the next page in the same
    conditional UPDATEs, so a page costs one transaction, not two. The unit row must already
    be locked (lock order: unit, month, run). Returns whether the next page is reserved; when
    it is not (a cap would be passed or the run is no longer running) only the capture is
    made. Spent + reserved never passes either cap: the condition is evaluated on the locked
    row."""
    counts = [counters[name] for name in RUN_COUNTERS]
    free = Decimal("-1e12")  # a condition that always holds: capture and release only shrink
    with connection.cursor() as cursor:
        if next_amount is not None:
            change = spent - reserved + next_amount
            month_params = [spent, next_amount - reserved, period_id, change]
            run_params = [spent, next_amount - reserved, *counts, run_id, RunStatus.RUNNING, change]
            if connection.vendor == "postgresql":  # both ledgers in one statement: the month's row
                cursor.execute(_ledger_both_sql(), month_params + run_params)  # is held for less time
                month_took, run_took = cursor.fetchone()
            else:
                cursor.execute(_ledger_sql(BudgetPeriod, "cap"), month_params)
                month_took, run_took = cursor.rowcount, 0
                if month_took:
                    cursor.execute(_ledger_sql(CollectionRun, "budget_cap", RUN_COUNTERS, status=True), run_params)
                    run_took = cursor.rowcount
            if run_took:
                return True
            if month_took:  # the month took the next reservation but the run refused it: give it back
                cursor.execute(_ledger_sql(BudgetPeriod, "cap"), [0, -next_amount, period_id, free])
                cursor.execute(_ledger_sql(CollectionRun, "budget_cap", RUN_COUNTERS),
                               [spent, -reserved, *counts, run_id, free])
                return False
        cursor.execute(_ledger_sql(BudgetPeriod, "cap"), [spent, -reserved, period_id, free])
        cursor.execute(_ledger_sql(CollectionRun, "budget_cap", RUN_COUNTERS), [spent, -reserved, *counts, run_id, free])
    return False


@cache
def _ledger_both_sql() -> str:
    """PostgreSQL: the month's conditional UPDATE, then the run's only if the month's took
    (data-modifying CTEs); returns how many rows each changed."""
    month = _ledger_sql(BudgetPeriod, "cap")
    run = _ledger_sql(CollectionRun, "budget_cap", RUN_COUNTERS, status=True)
    return (
        f"WITH m AS ({month} RETURNING 1), r AS ({run} AND EXISTS (SELECT FROM m) RETURNING 1) "  # noqa: S608
        "SELECT (SELECT count(*) FROM m), (SELECT count(*) FROM r)"
    )


def budget_charge_month(*, amount: Decimal) -> bool:
    """Spend `amount` on this month's ledger outside any run (e.g. estimate probes), only if it
    fits. Returns whether it was charged."""
    if amount <= 0:
        return True
    return bool(
        BudgetPeriod.objects.filter(fits("cap", amount), pk=period_current().pk).update(spent=_plus("spent", amount))
    )
