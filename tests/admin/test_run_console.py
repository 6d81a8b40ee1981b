"""The run page as the operators' console: header, buttons, seen-in-run links, dashboard,
category picker and who may change money."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from collection.models import Category, CollectionRun, CollectionSettings, RunStatus, RunUnit, Seller, UnitStatus
from collection.services import runs
from tests.engine.helpers import drain
from tests.factories import make_categories, make_run

pytestmark = pytest.mark.django_db(transaction=True)

ADD = reverse("admin:collection_collectionrun_add")


def page_of(run) -> str:
    return reverse("admin:collection_collectionrun_change", args=[run.pk])


def press(client, run, action: str):
    url = reverse("admin:collection_collectionrun_transition", args=[run.pk, action])
    return client.post(url, follow=True)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def buttons(page: str) -> set[str]:
    return {a for a in ("start", "pause", "resume", "cancel") if f'name="action" value="{a}"' in page}


@pytest.fixture
def console(client, operator):
    client.force_login(operator)
    return client


def test_the_run_page_drives_the_run_and_leads_to_what_it_saw(console, operator):
    run = make_run(categories=2, items=60)
    page = console.get(page_of(run)).content.decode()
    assert 'id="run-header"' in page and buttons(page) == {"start", "cancel"}
    assert "This month" in page and "no call quota" in page  # the demo source has none

    response = press(console, run, "start")
    assert messages_of(response) == [f"Run #{run.pk}: started."]
    assert buttons(response.content.decode()) == {"pause", "cancel"}
    assert 'http-equiv="refresh"' in response.content.decode()  # live: it refreshes itself
    response = press(console, run, "start")  # no longer legal: refused with the reason, nothing changes
    assert messages_of(response) == [f"Run #{run.pk}: not started: cannot start a running run."]
    response = press(console, run, "pause")
    assert CollectionRun.objects.get(pk=run.pk).status == RunStatus.PAUSED
    assert buttons(response.content.decode()) == {"resume", "cancel"}
    press(console, run, "resume")
    run = drain(run, until=(RunStatus.COMPLETED,))
    page = console.get(page_of(run)).content.decode()
    assert buttons(page) == set() and 'http-equiv="refresh"' not in page

    # "seen in run": every seller the run's pages returned, also the ones an earlier run found first
    api = APIClient()
    api.force_authenticate(operator)
    seen = api.get("/api/collection/sellers/", {"run": run.pk, "page_size": 1000}).json()["results"]
    assert seen and f"Sellers seen ({len(seen)})" in page
    products = api.get("/api/collection/products/", {"run": run.pk, "page_size": 1000}).json()["results"]
    assert len(products) == 120 and "Products seen (120)" in page
    listed = console.get(reverse("admin:collection_seller_changelist"), {"run": run.pk})
    assert listed.context["cl"].result_count == len(seen)

    again = make_run(categories=Category.objects.filter(pk__in=run.units.values("category_id")))
    runs.run_start(run_id=again.pk)
    drain(again, until=(RunStatus.COMPLETED,))
    resee = api.get("/api/collection/sellers/", {"run": again.pk, "page_size": 1000}).json()["results"]
    assert {s["id"] for s in resee} == {s["id"] for s in seen}
    assert api.get("/api/collection/sellers/", {"first_seen_run": again.pk}).json()["results"] == []


def test_the_run_page_reads_like_a_console(console):
    run = make_run(categories=1, items=20, status=RunStatus.RUNNING)
    unit = run.units.get()
    RunUnit.objects.filter(pk=unit.pk).update(last_error="HTTP 503 from the source", attempts=2)
    from collection.services.lifecycle import event_write

    event_write(run_id=run.pk, unit_id=unit.pk, kind="unit_retry", error="HTTP 503 from the source", attempt=2)
    CollectionRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(seconds=20))
    page = console.get(page_of(run)).content.decode()
    assert "error: HTTP 503 from the source · attempt: 2" in page  # the detail as text, not JSON
    assert '{"error"' not in page
    assert timezone.now().strftime("%Y-%m-%d %H:") in page  # events to the second
    assert "Internals: cursors, leases, tasks" in page and "collapse" in page
    assert "estimate at creation" in page.lower() and "cap 100.00 USD (far above)" in page


def test_save_and_start_creates_and_starts(console):
    cats = make_categories(2, items=40)
    response = console.post(ADD, {"source": "demo", "categories": [c.pk for c in cats], "_save_start": "1"},
                            follow=True)
    run = CollectionRun.objects.get()
    assert run.status == RunStatus.RUNNING
    assert messages_of(response) == [f"Run #{run.pk}: created and started."]


def test_the_category_picker_searches_instead_of_listing_everything(console):
    Category.objects.bulk_create([Category(platform="demo", external_id=str(100_000 + i), name=f"Category {i}")
                                  for i in range(20_000)])
    page = console.get(ADD).content.decode()
    assert "admin-autocomplete" in page and "select2" in page and "admin/css/autocomplete.css" in page
    assert page.count("<option") < 50  # not 20,000 options
    found = console.get(reverse("admin:autocomplete"), {"app_label": "collection", "model_name": "rununit",
                                                        "field_name": "category", "term": "Category 1999"}).json()
    texts = [r["text"] for r in found["results"]]
    assert texts and all("1999" in text for text in texts)  # a page of matches, not the whole table
    assert any(text.startswith("Category 1999 ") for text in texts) and len(texts) <= 20


def test_the_index_dashboard_shows_month_runs_quotas_and_stalled_units(console):
    run = make_run(categories=1, items=20, status=RunStatus.RUNNING)
    RunUnit.objects.filter(run=run).update(status=UnitStatus.RUNNING, lease_owner="dead:1:x",
                                           lease_expires_at=timezone.now() - timedelta(minutes=3))
    page = console.get(reverse("admin:index")).content.decode()
    assert 'id="collection-dashboard"' in page and "This month" in page
    assert "1 running" in page and "0 paused" in page
    assert f"run #{run.pk}" in page and "recovery will take it over" in page
    assert "Source ebay" in page and "not configured" in page.lower() or "calls today" in page


def test_money_and_deletes_need_the_automation_permission(client):
    viewer = User.objects.create_user("clerk", password="x", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=[
        "view_collectionrun", "change_collectionrun", "delete_collectionrun", "view_collectionsettings",
        "change_collectionsettings", "view_seller", "delete_seller", "view_category", "delete_category"]))
    client.force_login(viewer)
    run = make_run(categories=1, items=20)
    page = client.get(page_of(run)).content.decode()
    assert buttons(page) == set() and 'name="budget_cap"' not in page
    assert client.post(reverse("admin:collection_collectionrun_transition", args=[run.pk, "start"])).status_code == 403
    assert client.post(reverse("admin:collection_collectionrun_delete", args=[run.pk])).status_code == 403
    settings_url = reverse("admin:collection_collectionsettings_change", args=[CollectionSettings.load().pk])
    client.post(settings_url, {"run_budget_cap": "99999"})
    assert CollectionSettings.load().run_budget_cap != Decimal("99999")
    seller = Seller.objects.create(platform="demo", external_id="s1", first_seen_at=timezone.now(),
                                   last_seen_at=timezone.now())
    assert client.post(reverse("admin:collection_seller_delete", args=[seller.pk])).status_code == 403
    assert CollectionRun.objects.filter(pk=run.pk).exists() and Seller.objects.filter(pk=seller.pk).exists()
