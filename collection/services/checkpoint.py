"""The per-page checkpoint: one transaction records a fetched page wholly or not at all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Case, F, Value, When
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
from collection.sources import Page, ProductItem, SellerItem

from .budget import budget_capture_and_reserve
from .runs import event_write


@dataclass
class CheckpointResult:
    items: int
    sellers_new: int
    cost: Decimal
    done: bool
    next_reserved: bool = False


def insert_rows(cursor, model, columns: list[str], rows: list[list], conflict: str, returning: str = "") -> list:
    """INSERT … ON CONFLICT … — the engine's hot path, one statement per chunk of rows.

    PostgreSQL gets one array per column (`SELECT * FROM unnest(…)`): the statement text is
    the same whatever the number of rows, so the driver does not re-parse a thousand
    placeholders on every page, and the server can prepare it once. Other databases (SQLite
    3.35+) get a multi-row VALUES. The ORM's bulk_create cannot express these conflict
    clauses (see bench/ for why this path matters). Only constant identifiers are
    interpolated; every value is a bound parameter."""
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(columns)
    found = []
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        if connection.vendor == "postgresql":
            fields = {f.column: f for f in model._meta.fields}
            arrays = ", ".join(f"%s::{fields[c].db_type(connection)}[]" for c in columns)
            sql = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) {conflict}"  # noqa: S608
            params = [list(column) for column in zip(*chunk, strict=True)]
        else:
            row = "(" + ", ".join(["%s"] * len(columns)) + ")"
            sql = f"INSERT INTO {table} ({names}) VALUES {', '.join([row] * len(chunk))} {conflict}"  # noqa: S608
            params = [value for values in chunk for value in values]
        if returning:
            sql += f" RETURNING {returning}"
        cursor.execute(sql, params)
        if returning:
            found += cursor.fetchall()
    return found


SELLER_COLUMNS = ["platform", "external_id", "name", "feedback_score", "feedback_percent", "first_seen_at",
                  "last_seen_at", "times_seen", "first_seen_run_id", "last_seen_run_id"]
PRODUCT_COLUMNS = ["platform", "external_id", "title", "price", "currency", "url", "seller_id", "category_id",
                   "first_seen_at", "last_seen_at", "first_seen_run_id"]
PRODUCT_CONFLICT = "ON CONFLICT (platform, external_id) DO UPDATE SET " + ", ".join(
    f"{name} = excluded.{name}"
    for name in ("title", "price", "currency", "url", "seller_id", "category_id", "last_seen_at")
)
SELLER_CONFLICT = "ON CONFLICT (platform, external_id) DO NOTHING"
CHUNK = 1000


def seller_rows(platform: str, sellers: dict[str, SellerItem], run_id: int | None, now) -> list[list]:
    return [
        [platform, key, s.name[:255], s.feedback_score, s.feedback_percent, now, now, 1, run_id, run_id]
        for key, s in sorted(sellers.items())
    ]


def product_rows(platform: str, items: list[ProductItem], seller_ids: dict, category_id, run_id, now) -> list[list]:
    products = sorted({item.external_id: item for item in items}.items())
    return [
        [platform, key, item.title[:500], item.price, item.currency, item.url[:1000],
         seller_ids.get(item.seller.external_id) if item.seller else None, category_id, now, now, run_id]
        for key, item in products
    ]


def _upsert_sellers(cursor, *, platform: str, sellers: dict[str, SellerItem], run_id: int | None, now) -> tuple[dict, int]:
    """Sellers are shared by every page of every run, and a few big ones appear on almost
    every page: writing them on each page would serialize all workers on their row locks. So
    new sellers are inserted (ON CONFLICT DO NOTHING locks nothing), and a known seller is
    refreshed once per run — the first page of the run that sees it — with a conditional
    UPDATE that skips (and does not lock) rows this run already refreshed. Returns
    ({external id: id}, new sellers)."""
    inserted = insert_rows(cursor, Seller, SELLER_COLUMNS, seller_rows(platform, sellers, run_id, now),
                           SELLER_CONFLICT, returning="id, external_id")
    ids: dict[str, int] = {external_id: pk for pk, external_id in inserted}
    new = len(ids)
    known = [key for key in sellers if key not in ids]
    if known:
        rows = Seller.objects.filter(platform=platform, external_id__in=known).values_list(
            "external_id", "pk", "last_seen_run_id"
        )
        stale: dict[int, SellerItem] = {}
        for external_id, pk, last_run in rows:
            ids[external_id] = pk
            if last_run != run_id:
                stale[pk] = sellers[external_id]
        if stale:  # first sighting in this run: one statement, at most once per seller and run

            def per_row(attribute: str, output_field) -> Case:
                whens = [When(pk=pk, then=Value(getattr(s, attribute), output_field=output_field))
                         for pk, s in stale.items()]
                return Case(*whens, default=F(attribute), output_field=output_field)

            fields = {f.name: f for f in Seller._meta.fields}
            Seller.objects.filter(pk__in=list(stale)).exclude(last_seen_run_id=run_id).update(
                times_seen=F("times_seen") + 1, last_seen_at=timezone.now(), last_seen_run_id=run_id,
                name=per_row("name", fields["name"]), feedback_score=per_row("feedback_score", fields["feedback_score"]),
                feedback_percent=per_row("feedback_percent", fields["feedback_percent"]),
            )
    return ids, new


def upsert_items(*, platform: str, items: list[ProductItem], run_id: int | None,
                 category_id: int | None) -> int:
    """Store the page's sellers and insert or refresh its products (ON CONFLICT on the unique
    platform + external id). Returns how many sellers were new. Rows are written in id order
    so concurrent pages lock shared rows in the same order (no deadlocks)."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    sellers = {item.seller.external_id: item.seller for item in items if item.seller}
    with connection.cursor() as cursor:
        seller_ids, new_sellers = _upsert_sellers(cursor, platform=platform, sellers=sellers, run_id=run_id, now=now)
        insert_rows(cursor, Product, PRODUCT_COLUMNS, product_rows(platform, items, seller_ids, category_id, run_id, now),
                    PRODUCT_CONFLICT)
    return new_sellers


def unit_checkpoint(*, unit_id: int, run_id: int, category_id: int, lease_owner: str, page_index: int, page: Page,
                    platform: str,
                    lease_seconds: int, reserved: Decimal, period_id: int, next_reservation: Decimal | None = None,
                    warn_percent: int = 100) -> CheckpointResult | None:
    """Record page `page_index` of the unit in one transaction: upsert its items, advance the
    cursor and counters, capture its cost (`reserved` was held for it on ledger `period_id`),
    extend the lease — and reserve `next_reservation` for the next page when given.

    Returns None and changes nothing when the unit's cursor has already passed this page or
    the caller no longer holds the lease (recovery took the unit over)."""
    now = timezone.now()
    done = page.next_cursor is None
    count = len(page.items)
    spent = min(max(page.cost, Decimal(0)), reserved)
    next_amount = None if done else next_reservation
    unit_changes = {
        "cursor": page.next_cursor, "pages_done": F("pages_done") + 1, "items_done": F("items_done") + count,
        "attempts": 0, "last_error": "", "cost": F("cost") + spent,
        "reserved": next_amount or 0, "reserved_period_id": period_id if next_amount else None,
    }
    if done:
        unit_changes.update(status=UnitStatus.DONE, finished_at=now, lease_owner="", lease_expires_at=None)
    else:
        unit_changes.update(lease_expires_at=now + timedelta(seconds=lease_seconds))
    with transaction.atomic():
        # The conditional update both checks the lease and the cursor and locks the unit row.
        if not RunUnit.objects.filter(
            pk=unit_id, lease_owner=lease_owner, pages_done=page_index, status=UnitStatus.RUNNING
        ).update(**unit_changes):
            return None
        new_sellers = upsert_items(platform=platform, items=page.items, run_id=run_id, category_id=category_id)
        next_reserved = budget_capture_and_reserve(
            run_id=run_id, period_id=period_id, reserved=reserved, spent=spent, next_amount=next_amount,
            counters={"pages_done": 1, "items_done": count, "sellers_new": new_sellers, "units_done": int(done)},
        )
        if next_amount and not next_reserved:
            RunUnit.objects.filter(pk=unit_id).update(reserved=0, reserved_period_id=None)
        if page.cost > reserved:
            event_write(run_id=run_id, unit_id=unit_id, kind=EventKind.OVERCHARGE,
                        reported=str(page.cost), reserved=str(reserved))
        if done or (page.total is not None and page_index == 0):
            category_changes = {"last_collected_at": now} if done else {}
            if page.total is not None:  # the first page tells the category's size
                category_changes.update(known_item_count=page.total, item_count_measured_at=now)
            Category.objects.filter(pk=category_id).update(**category_changes)
        if done:
            unit = RunUnit.objects.values("items_done", "cost").get(pk=unit_id)
            event_write(run_id=run_id, unit_id=unit_id, kind=EventKind.UNIT_DONE,
                        pages=page_index + 1, items=unit["items_done"], cost=str(unit["cost"]))
        if warn_percent < 100 and spent and (done or page_index % 10 == 0):
            _warn_once(run_id, warn_percent)  # checked every tenth page: a warning, not a limit
    return CheckpointResult(items=count, sellers_new=new_sellers, cost=spent, done=done, next_reserved=next_reserved)


def _warn_once(run_id: int, percent: int) -> None:
    threshold = F("budget_cap") * percent / 100
    if CollectionRun.objects.filter(pk=run_id, budget_warned_at__isnull=True, spent__gte=threshold).update(
        budget_warned_at=timezone.now()
    ):
        event_write(run_id=run_id, kind=EventKind.BUDGET_WARNING, percent=percent)
