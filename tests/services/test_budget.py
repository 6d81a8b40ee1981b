import threading
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from collection.models import BudgetPeriod, CollectionRun, RunStatus, RunUnit
from collection.services.budget import budget_reserve, budget_settle, period_current
from collection.services.errors import BudgetExceeded
from tests.conftest import postgres_only, set_settings
from tests.factories import make_run


def running_run(*, cap: str, units: int = 1) -> CollectionRun:
    return make_run(categories=units, items=0, budget_cap=cap, status=RunStatus.RUNNING)


@pytest.mark.django_db
def test_the_first_reservation_that_would_pass_the_run_cap_is_refused():
    run = running_run(cap="0.30")
    unit = run.units.get()
    for _ in range(3):
        budget_reserve(unit_id=unit.pk, run_id=run.pk, amount=Decimal("0.1"))
        unit.refresh_from_db()
        budget_settle(unit=RunUnit.objects.get(pk=unit.pk), spent=Decimal("0.1"))
    with pytest.raises(BudgetExceeded) as caught:
        budget_reserve(unit_id=unit.pk, run_id=run.pk, amount=Decimal("0.0001"))
    assert caught.value.scope == "run"
    run.refresh_from_db()
    unit.refresh_from_db()
    # 0.1 + 0.1 + 0.1 == 0.3 exactly, on SQLite's floating NUMERIC too; the refusal reserved nothing
    assert (run.spent, run.reserved, unit.reserved, unit.cost) == (Decimal("0.3"), 0, 0, Decimal("0.3"))
    assert period_current().reserved == 0 and period_current().spent == Decimal("0.3")


@pytest.mark.django_db
def test_the_month_cap_is_a_ledger_every_run_passes_through():
    set_settings(monthly_budget_cap=Decimal("1.00"))
    first, second = running_run(cap="5"), running_run(cap="5")
    budget_reserve(unit_id=first.units.get().pk, run_id=first.pk, amount=Decimal("0.60"))
    with pytest.raises(BudgetExceeded) as caught:
        budget_reserve(unit_id=second.units.get().pk, run_id=second.pk, amount=Decimal("0.41"))
    assert caught.value.scope == "month"
    second.refresh_from_db()
    assert second.reserved == 0 and second.units.get().reserved == 0
    budget_reserve(unit_id=second.units.get().pk, run_id=second.pk, amount=Decimal("0.40"))
    assert period_current().reserved == Decimal("1.00")


@pytest.mark.django_db
def test_capture_spends_the_actual_cost_and_release_frees_the_rest():
    run = running_run(cap="1")
    unit = run.units.get()
    budget_reserve(unit_id=unit.pk, run_id=run.pk, amount=Decimal("0.5"))
    spent = budget_settle(unit=RunUnit.objects.get(pk=unit.pk), spent=Decimal("0.2"))
    run.refresh_from_db()
    assert spent == Decimal("0.2") and (run.spent, run.reserved) == (Decimal("0.2"), 0)
    budget_reserve(unit_id=unit.pk, run_id=run.pk, amount=Decimal("0.5"))
    budget_settle(unit=RunUnit.objects.get(pk=unit.pk), spent=Decimal("0"))
    run.refresh_from_db()
    assert (run.spent, run.reserved) == (Decimal("0.2"), 0)


@pytest.mark.django_db
def test_a_run_that_is_not_running_gets_no_reservation():
    run = running_run(cap="1")
    CollectionRun.objects.filter(pk=run.pk).update(status=RunStatus.PAUSED)
    with pytest.raises(BudgetExceeded):
        budget_reserve(unit_id=run.units.get().pk, run_id=run.pk, amount=Decimal("0.01"))
    assert period_current().reserved == 0


@pytest.mark.django_db
def test_the_database_rejects_a_direct_write_that_breaks_spent_plus_reserved_within_cap():
    run = running_run(cap="1")
    with pytest.raises(IntegrityError), transaction.atomic():
        CollectionRun.objects.filter(pk=run.pk).update(spent=Decimal("0.7"), reserved=Decimal("0.31"))
    with pytest.raises(IntegrityError), transaction.atomic():
        CollectionRun.objects.filter(pk=run.pk).update(spent=Decimal("-0.01"))
    with pytest.raises(IntegrityError), transaction.atomic():
        BudgetPeriod.objects.filter(pk=period_current().pk).update(spent=Decimal("999999"))
    CollectionRun.objects.filter(pk=run.pk).update(spent=Decimal("0.7"), reserved=Decimal("0.3"))  # exactly the cap


@postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("repeat", range(3))
def test_concurrent_reservations_against_a_cap_that_fits_k_get_exactly_k(repeat):
    k, threads, attempts_each = 5, 8, 3
    run = running_run(cap=str(Decimal("0.07") * k), units=threads)
    unit_ids = list(run.units.values_list("pk", flat=True))
    barrier = threading.Barrier(threads)
    granted, refused = [], []

    def reserve(unit_id):
        try:
            barrier.wait()
            for _ in range(attempts_each):
                try:
                    budget_reserve(unit_id=unit_id, run_id=run.pk, amount=Decimal("0.07"))
                    granted.append(unit_id)
                except BudgetExceeded:
                    refused.append(unit_id)
        finally:
            connection.close()

    pool = [threading.Thread(target=reserve, args=(uid,)) for uid in unit_ids]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    run.refresh_from_db()
    assert len(granted) == k and len(refused) == threads * attempts_each - k
    assert run.reserved == Decimal("0.07") * k == run.budget_cap
    assert sum(RunUnit.objects.filter(run=run).values_list("reserved", flat=True)) == run.reserved
