"""The per-page checkpoint: one transaction records a fetched page wholly or not at all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from collection.models import (
    Category,
    CollectionRun,
    EventKind,
    Product,
    RunUnit,
    Seller,
    UnitStatus,
)
from collection.sources import Page, ProductItem

from .budget import budget_capture
from .runs import event_write


@dataclass
class CheckpointResult:
    items: int
    sellers_new: int
    cost: Decimal
    done: bool


def upsert_items(*, platform: str, items: list[ProductItem], run_id: int | None,
                 category_id: int | None) -> int:
    """Insert or refresh the page's sellers and products (bulk, ON CONFLICT on the unique
    platform + external id). Returns how many sellers were new. Rows are written in id order
    so concurrent pages lock shared sellers in the same order (no deadlocks)."""
    now = timezone.now()
    sellers = {item.seller.external_id: item.seller for item in items if item.seller}
    seller_ids: dict[str, int] = {}
    new_sellers = 0
    if sellers:
        keys = sorted(sellers)
        seen_before = dict(
            Seller.objects.filter(platform=platform, external_id__in=keys).values_list("external_id", "times_seen")
        )
        new_sellers = len(keys) - len(seen_before)
        rows = [
            Seller(
                platform=platform, external_id=key, name=sellers[key].name[:255],
                feedback_score=sellers[key].feedback_score, feedback_percent=sellers[key].feedback_percent,
                first_seen_at=now, last_seen_at=now, times_seen=seen_before.get(key, 0) + 1,
                first_seen_run_id=run_id,
            )
            for key in keys
        ]
        Seller.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["platform", "external_id"],
            update_fields=["name", "feedback_score", "feedback_percent", "last_seen_at", "times_seen"],
        )
        seller_ids = {row.external_id: row.pk for row in rows if row.pk}
        if len(seller_ids) != len(rows):  # backends that cannot return ids from an upsert
            seller_ids = dict(
                Seller.objects.filter(platform=platform, external_id__in=keys).values_list("external_id", "pk")
            )
    products = {item.external_id: item for item in items}
    Product.objects.bulk_create(
        [
            Product(
                platform=platform, external_id=key, title=item.title[:500], price=item.price,
                currency=item.currency, url=item.url[:1000],
                seller_id=seller_ids.get(item.seller.external_id) if item.seller else None,
                category_id=category_id, first_seen_at=now, last_seen_at=now, first_seen_run_id=run_id,
            )
            for key, item in sorted(products.items())
        ],
        update_conflicts=True, unique_fields=["platform", "external_id"],
        update_fields=["title", "price", "currency", "url", "seller", "category", "last_seen_at"],
    )
    return new_sellers


def unit_checkpoint(*, unit_id: int, lease_owner: str, page_index: int, page: Page, platform: str,
                    lease_seconds: int, warn_percent: int = 100) -> CheckpointResult | None:
    """Record page `page_index` of the unit: upsert its items, advance the cursor and counters,
    capture its cost and extend the lease — in one transaction.

    Returns None and changes nothing when the unit's cursor has already passed this page or
    the caller no longer holds the lease (recovery took the unit over)."""
    with transaction.atomic():
        unit = RunUnit.objects.select_for_update().get(pk=unit_id)
        if unit.lease_owner != lease_owner or unit.pages_done != page_index or unit.status != UnitStatus.RUNNING:
            return None
        new_sellers = upsert_items(
            platform=platform, items=page.items, run_id=unit.run_id, category_id=unit.category_id
        )
        reserved = unit.reserved
        cost = budget_capture(unit=unit, actual=page.cost)
        if page.cost > reserved:
            event_write(
                run_id=unit.run_id, unit_id=unit.pk, kind=EventKind.OVERCHARGE,
                reported=str(page.cost), reserved=str(reserved),
            )
        now = timezone.now()
        done = page.next_cursor is None
        count = len(page.items)
        unit_changes = {
            "cursor": page.next_cursor, "pages_done": F("pages_done") + 1, "items_done": F("items_done") + count,
            "attempts": 0, "last_error": "",
        }
        if done:
            unit_changes.update(status=UnitStatus.DONE, finished_at=now, lease_owner="", lease_expires_at=None)
        else:
            unit_changes.update(lease_expires_at=now + timedelta(seconds=lease_seconds))
        RunUnit.objects.filter(pk=unit.pk).update(**unit_changes)
        CollectionRun.objects.filter(pk=unit.run_id).update(
            pages_done=F("pages_done") + 1, items_done=F("items_done") + count,
            sellers_new=F("sellers_new") + new_sellers, units_done=F("units_done") + int(done),
        )
        if done or page.total is not None:
            category_changes = {"last_collected_at": now} if done else {}
            if page.total is not None:
                category_changes.update(known_item_count=page.total, item_count_measured_at=now)
            if done or unit.pages_done == 0:
                Category.objects.filter(pk=unit.category_id).update(**category_changes)
        if done:
            event_write(run_id=unit.run_id, unit_id=unit.pk, kind=EventKind.UNIT_DONE,
                        pages=unit.pages_done + 1, items=unit.items_done + count, cost=str(unit.cost))
        if warn_percent < 100 and cost:
            _warn_once(unit.run_id, warn_percent)
    return CheckpointResult(items=count, sellers_new=new_sellers, cost=cost, done=done)


def _warn_once(run_id: int, percent: int) -> None:
    threshold = F("budget_cap") * percent / 100
    if CollectionRun.objects.filter(pk=run_id, budget_warned_at__isnull=True, spent__gte=threshold).update(
        budget_warned_at=timezone.now()
    ):
        event_write(run_id=run_id, kind=EventKind.BUDGET_WARNING, percent=percent)
