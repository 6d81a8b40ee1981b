from decimal import Decimal

import pytest
from django.test import override_settings

from collection.models import BudgetPeriod
from collection.services.budget import current_month
from collection.services.errors import InvalidInput
from collection.services.estimate import estimate
from tests.conftest import make_categories, set_settings

pytestmark = pytest.mark.django_db

PRICING = {"DEMO_PAGE_SIZE": 20, "DEMO_COST_PER_REQUEST": "0.05", "DEMO_COST_PER_RESULT": "0.002"}


@override_settings(**PRICING)
def test_estimate_by_hand_computed_example():
    known = make_categories(1, items=45)[0]  # 45 items → 3 pages (20 + 20 + 5)
    unknown = make_categories(1)[0]  # unknown → settings default 50 → 3 pages
    empty = make_categories(1, items=0)[0]  # an empty category still costs one request
    set_settings(default_items_per_category=50, run_budget_cap=Decimal("10"), monthly_budget_cap=Decimal("500"))

    est = estimate(source="demo", category_ids=[known.pk, unknown.pk, empty.pk])

    rows = {row.id: row for row in est.categories}
    # 3 × 0.05 + 45 × 0.002 = 0.15 + 0.09 = 0.24
    assert (rows[known.pk].items, rows[known.pk].pages, rows[known.pk].cost) == (45, 3, Decimal("0.24"))
    assert rows[known.pk].items_known and not rows[unknown.pk].items_known
    # 3 × 0.05 + 50 × 0.002 = 0.25
    assert (rows[unknown.pk].items, rows[unknown.pk].pages, rows[unknown.pk].cost) == (50, 3, Decimal("0.25"))
    assert (rows[empty.pk].items, rows[empty.pk].pages, rows[empty.pk].cost) == (0, 1, Decimal("0.05"))
    assert est.items == 95 and est.pages == 7
    assert est.total_cost == Decimal("0.54")
    assert est.cap == Decimal("10") and est.cap_reason == "settings"
    assert est.within_budget and est.reason == ""


@override_settings(**PRICING)
def test_applicable_cap_is_the_smallest_of_requested_settings_and_month():
    cat = make_categories(1, items=100)[0]  # 5 pages: 0.25 + 0.2 = 0.45
    set_settings(run_budget_cap=Decimal("10"), monthly_budget_cap=Decimal("100"))

    assert estimate(source="demo", category_ids=[cat.pk], budget_cap="0.40").cap_reason == "run"
    requested = estimate(source="demo", category_ids=[cat.pk], budget_cap="0.40")
    assert requested.cap == Decimal("0.40") and not requested.within_budget
    assert "requested run cap" in requested.reason and "0.45" in requested.reason

    BudgetPeriod.objects.filter(month=current_month()).update(spent=Decimal("99.70"))
    month = estimate(source="demo", category_ids=[cat.pk], budget_cap="5")
    assert (month.cap, month.cap_reason, month.within_budget) == (Decimal("0.30"), "month", False)
    assert "this month" in month.reason


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"source": "nope", "category_ids": [1]}, "source"),
        ({"source": "demo", "category_ids": []}, "categories"),
        ({"source": "demo", "category_ids": "1,2"}, "categories"),
        ({"source": "demo", "category_ids": ["x"]}, "categories"),
        ({"source": "demo", "category_ids": [1, 1]}, "categories"),
        ({"source": "demo", "category_ids": list(range(1, 1002))}, "categories"),
        ({"source": "demo", "category_ids": [999999]}, "categories"),
        ({"source": "demo", "category_ids": [1], "budget_cap": "-1"}, "budget_cap"),
        ({"source": "demo", "category_ids": [1], "budget_cap": "1e30"}, "budget_cap"),
        ({"source": "demo", "category_ids": [1], "budget_cap": "abc"}, "budget_cap"),
        ({"source": "demo", "category_ids": [1], "budget_cap": "NaN"}, "budget_cap"),
        ({"source": "demo", "category_ids": [1], "budget_cap": "0.00001"}, "budget_cap"),
    ],
)
def test_bad_input_names_the_field(kwargs, field):
    make_categories(1)
    with pytest.raises(InvalidInput) as caught:
        estimate(**kwargs)
    assert field in caught.value.errors


def test_categories_of_another_platform_are_refused():
    other = make_categories(1, platform="ebay")[0]
    with pytest.raises(InvalidInput) as caught:
        estimate(source="demo", category_ids=[other.pk])
    assert "not on platform 'demo'" in caught.value.errors["categories"][0]
