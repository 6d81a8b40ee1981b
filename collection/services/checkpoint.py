"""The per-page checkpoint: one transaction records a fetched page wholly or not at all."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import cache

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from collection.models import (
    Category,
    CollectionRun,
    EventKind,
    Offer,
    Product,
    ProductSearchQueue,
    ProductSeen,
    RunProduct,
    RunSeller,
    RunUnit,
    Seller,
    UnitStatus,
)
from collection.redact import untrusted_text
from collection.sources import Page, ProductItem, SellerItem

from . import search_index
from .budget import budget_capture_and_reserve
from .lifecycle import event_write

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageCheckpoint:
    """A fetched page to record: page `page_index` of unit `unit_id`, fetched under the lease
    of `lease_owner` with `reserved` held for it on month ledger `period_id`. With
    `next_reservation`, the next page's maximum cost is reserved in the same transaction."""

    unit_id: int
    run_id: int
    category_id: int
    platform: str
    lease_owner: str
    lease_seconds: int
    page_index: int
    page: Page
    reserved: Decimal
    period_id: int
    next_reservation: Decimal | None = None
    warn_percent: int = 100


@dataclass
class CheckpointResult:
    items: int
    sellers_new: int
    cost: Decimal
    done: bool
    next_reserved: bool = False


def _param(name: str, pg_type: str, vendor: str) -> str:
    """A named parameter, typed on PostgreSQL (where a bare one in a SELECT list is text)."""
    return f"%({name})s::{pg_type}" if vendor == "postgresql" else f"%({name})s"


def _page_table(columns: dict[str, str], vendor: str, param: str = "rows") -> str:
    """The page's rows as table `p`, from one parameter `rows`: a JSON array of objects.

    One text parameter per statement, whatever the number of rows: the driver passes it as
    is, the statement text never changes (PostgreSQL prepares it once), and the database
    parses the rows in C. Binding a placeholder (or an array element) per value costs the
    driver far more per page than the database's work (bench/)."""
    if vendor == "postgresql":
        typed = ", ".join(f"{name} {pg_type}" for name, pg_type in columns.items())
        return f"jsonb_to_recordset(%({param})s::jsonb) AS p({typed})"
    picked = ", ".join(f"json_extract(value, '$.{name}') AS {name}" for name in columns)
    return f"(SELECT {picked} FROM json_each(%({param})s)) AS p"  # noqa: S608


def _ids_of(table: str, platform: str, param: str, vendor: str) -> str:
    """The row ids of `table` (sellers, products) whose external ids are the strings of a
    parameter holding a JSON array, as rows of a subquery `t(id, e)` (e: the external id).
    Each one is looked up by a subquery on the unique key, the form the prepared statement's
    generic plan keeps as an index lookup: with `IN (SELECT …)`, the plan made while the table
    was small read all of it on every page (bench/: 98 pages/s became 11)."""
    values = (f"jsonb_array_elements_text(%({param})s::jsonb) AS e(value)" if vendor == "postgresql"
              else f"json_each(%({param})s) AS e")
    return (f"(SELECT (SELECT x.id FROM {table} x WHERE x.platform = {platform} "  # noqa: S608
            f"AND x.external_id = e.value) AS id, e.value AS e FROM {values}) AS t")


SELLER_ROW = {"e": "varchar", "n": "varchar", "fs": "integer", "fp": "numeric", "at": "varchar", "co": "varchar"}
PRODUCT_ROW = {"e": "varchar", "t": "varchar", "p": "numeric", "c": "varchar", "u": "varchar", "s": "varchar",
               "cd": "varchar", "bo": "varchar", "lc": "varchar", "li": "varchar", "ci": "varchar"}
OFFER_ROW = {"e": "varchar", "s": "varchar", "cd": "varchar", "p": "numeric", "c": "varchar", "f": "boolean"}
# product column <- page row key, for the columns refreshed on every sighting
PRODUCT_COLUMNS = {"title": "t", "price": "p", "currency": "c", "url": "u", "condition": "cd", "buying_options": "bo",
                   "location_country": "lc", "legacy_id": "li", "source_category_ids": "ci"}


@cache
def page_sql(vendor: str, queue_search: bool = True) -> dict[str, str]:
    """The statements that store a page's items (see upsert_items), for one database vendor.
    With `queue_search`, the products inserted or changed are queued for their title search
    entry (services/search_index.py). Only constant identifiers are interpolated; every value
    is a bound parameter."""
    seller, product, offer, run_product, run_seller, product_seen, search_queue = (
        connection.ops.quote_name(m._meta.db_table)
        for m in (Seller, Product, Offer, RunProduct, RunSeller, ProductSeen, ProductSearchQueue))
    platform, run, now = (_param("platform", "varchar", vendor), _param("run", "bigint", vendor),
                          _param("now", "timestamptz", vendor))
    category = _param("category", "bigint", vendor)
    sellers = _page_table(SELLER_ROW, vendor)
    # A sighting refreshes a seller once per run; a seller still without a name (stored by id
    # from an offer, before its /seller lookup) on every sighting, so its details land when
    # they come. Details a sighting lacks (empty, null) keep the stored ones. The condition
    # reads the seller row only: one that also read the page's row made PostgreSQL's generic
    # plan for the prepared statement grow with the table (bench/: 0.7 ms became 5 ms a page).
    refresh = (f"times_seen = times_seen + CASE WHEN last_seen_run_id IS NULL OR last_seen_run_id <> {run} "
               f"THEN 1 ELSE 0 END, last_seen_at = {now}, last_seen_run_id = {run}, "
               "name = COALESCE(NULLIF(p.n, ''), name), feedback_score = COALESCE(p.fs, feedback_score), "
               "feedback_percent = COALESCE(p.fp, feedback_percent), "
               "account_type = COALESCE(NULLIF(p.at, ''), account_type), country = COALESCE(NULLIF(p.co, ''), country)")
    if vendor == "postgresql":
        # Found through the unique index (ANY(ARRAY(…)): the planner cannot pick a scan of all
        # sellers), and locked in id order, so concurrent pages cannot deadlock.
        refresh_sql = (
            f"WITH p AS (SELECT * FROM {sellers}), "  # noqa: S608
            f"stale AS (SELECT s.id, p.n, p.fs, p.fp, p.at, p.co FROM {seller} s JOIN p ON s.external_id = p.e "
            f"WHERE s.platform = {platform} AND s.external_id = ANY(ARRAY(SELECT e FROM p)) "
            f"AND (s.last_seen_run_id IS DISTINCT FROM {run} OR s.name = '') "
            f"ORDER BY s.id FOR UPDATE OF s) "
            f"UPDATE {seller} SET {refresh} FROM stale p WHERE {seller}.id = p.id"
        )
    else:  # SQLite: one writer at a time
        refresh_sql = (
            f"UPDATE {seller} SET {refresh} FROM {sellers} WHERE {seller}.platform = {platform} "  # noqa: S608
            f"AND {seller}.external_id = p.e AND ({seller}.last_seen_run_id IS NOT {run} OR {seller}.name = '')"
        )
    # A product is rewritten only when the sighting changes it: when it was seen is ProductSeen's
    # (products_last_seen, products_after). The row is locked either way, as an update would.
    refreshed = (*PRODUCT_COLUMNS, "seller_id", "category_id")
    product_updates = ", ".join(f"{name} = excluded.{name}" for name in refreshed)
    distinct = "IS DISTINCT FROM" if vendor == "postgresql" else "IS NOT"
    product_changed = " OR ".join(f"{product}.{name} {distinct} excluded.{name}" for name in refreshed)
    # The page's products' last sighting, from rows `ids` of (id): one statement a page, in id order.
    last_seen_upsert = (f"INSERT INTO {product_seen} (product_id, last_seen_at) SELECT ids.id, {now} FROM {{ids}} "  # noqa: S608
                        f"ORDER BY ids.id ON CONFLICT (product_id) DO UPDATE SET last_seen_at = excluded.last_seen_at")
    product_columns = ", ".join(PRODUCT_COLUMNS)
    product_values = ", ".join(f"p.{key}" for key in PRODUCT_COLUMNS.values())
    offer_columns = (f"INSERT INTO {offer} (product_id, seller_id, condition, price, currency, "  # noqa: S608
                     "fulfilled_by_platform, first_seen_at, last_seen_at, last_seen_run_id) ")
    offer_seller = f"(SELECT s.id FROM {seller} s WHERE s.platform = {platform} AND s.external_id = p.s)"  # noqa: S608
    offer_conflict = ("ON CONFLICT (product_id, seller_id, condition) DO UPDATE SET price = excluded.price, "
                      "currency = excluded.currency, fulfilled_by_platform = excluded.fulfilled_by_platform, "
                      "last_seen_at = excluded.last_seen_at, last_seen_run_id = excluded.last_seen_run_id")
    products_upsert = (
        f"INSERT INTO {product} (platform, external_id, {product_columns}, seller_id, category_id, "  # noqa: S608
        f"first_seen_at, first_seen_run_id) "
        f"SELECT {platform}, p.e, {product_values}, "
        f"(SELECT s.id FROM {seller} s WHERE s.platform = {platform} AND s.external_id = p.s), "
        f"{category}, {now}, {run} FROM {_page_table(PRODUCT_ROW, vendor)} WHERE true ORDER BY p.e "
        f"ON CONFLICT (platform, external_id) DO UPDATE SET {product_updates} WHERE {product_changed}"
    )
    search_queued = {}
    if queue_search and vendor == "postgresql":
        # The upsert returns the rows it inserted or changed (not those left as they were), queued
        # in id order in the same statement (concurrent pages queue shared products in one order).
        # A product already queued is left queued, but DO UPDATE (which changes nothing) waits for
        # the row's lock, where DO NOTHING would not: the indexer may have taken the product,
        # reading its title as it was before this page; the page then queues it again once the
        # indexer has removed it, and its new title is indexed too.
        products_upsert = (f"WITH written AS ({products_upsert} RETURNING id) "  # noqa: S608
                           f"INSERT INTO {search_queue} (product_id) SELECT id FROM written ORDER BY id "
                           f"ON CONFLICT (product_id) DO UPDATE SET product_id = excluded.product_id WHERE false")
    elif queue_search:  # SQLite: no INSERT in a WITH; the ids come back, and are queued by a statement
        products_upsert += " RETURNING id"
        search_queued["search_queue"] = (f"INSERT INTO {search_queue} (product_id) "  # noqa: S608
                                         f"SELECT value FROM json_each(%(ids)s) WHERE true ON CONFLICT DO NOTHING")
    statements = {
        **search_queued,
        # WHERE true: SQLite would otherwise read ON CONFLICT as a join's ON.
        "sellers_insert": (
            f"INSERT INTO {seller} (platform, external_id, name, feedback_score, feedback_percent, account_type, "  # noqa: S608
            f"country, first_seen_at, last_seen_at, times_seen, first_seen_run_id, last_seen_run_id) "
            f"SELECT {platform}, p.e, p.n, p.fs, p.fp, p.at, p.co, {now}, {now}, 1, {run}, {run} FROM {sellers} "
            f"WHERE true ORDER BY p.e ON CONFLICT (platform, external_id) DO NOTHING RETURNING id"
        ),
        "sellers_refresh": refresh_sql,
        "products_upsert": products_upsert,
        # After the products (same transaction): found by their unique key, in id order.
        "products_last_seen": last_seen_upsert.format(
            ids=f"(SELECT t.id FROM {_ids_of(product, platform, 'products', vendor)} WHERE t.id IS NOT NULL) AS ids"),  # noqa: S608
        # After the products and sellers (same transaction): both are found by their unique keys.
        "offers_upsert": (
            f"{offer_columns}SELECT (SELECT x.id FROM {product} x WHERE x.platform = {platform} "  # noqa: S608
            f"AND x.external_id = p.e), {offer_seller}, p.cd, p.p, p.c, p.f, {now}, {now}, {run} "
            f"FROM {_page_table(OFFER_ROW, vendor, 'offers')} WHERE true ORDER BY p.e, p.s, p.cd {offer_conflict}"
        ),
        # Seen in run: a row a product and a seller the page returned, once a run (a page of
        # another category may have seen them already), in id order so that concurrent pages
        # of the run wait for each other in one order. After the upserts: found by unique key.
        "products_seen": (
            f"INSERT INTO {run_product} (run_id, product_id) SELECT {run}, t.id "  # noqa: S608
            f"FROM {_ids_of(product, platform, 'products', vendor)} "
            f"WHERE t.id IS NOT NULL ORDER BY t.id ON CONFLICT DO NOTHING"
        ),
        "sellers_seen": (
            f"INSERT INTO {run_seller} (run_id, seller_id) SELECT {run}, t.id "  # noqa: S608
            f"FROM {_ids_of(seller, platform, 'sellers', vendor)} "
            f"WHERE t.id IS NOT NULL ORDER BY t.id ON CONFLICT DO NOTHING"
        ),
    }
    if vendor == "postgresql":
        # What follows the products' upsert, in one statement: the page's products are looked up
        # once (the upsert cannot return them: it leaves unchanged ones as they are), then their
        # last sighting and offers are written from those ids; with `_seen`, also what the run saw.
        # A statement of its own, after the upsert: it sees a product another page inserted
        # meanwhile (the upsert waited for it), which the upsert's own snapshot would not.
        looked_up = _ids_of(product, platform, "products", vendor)
        ids = f"WITH ids AS (SELECT t.id, t.e FROM {looked_up} WHERE t.id IS NOT NULL)"  # noqa: S608
        last_seen = f"last AS ({last_seen_upsert.format(ids='ids')})"
        seen = (f"seen AS (INSERT INTO {run_product} (run_id, product_id) SELECT {run}, id FROM ids "  # noqa: S608
                f"ORDER BY id ON CONFLICT DO NOTHING)")
        offers_of_ids = (f"{offer_columns}SELECT ids.id, {offer_seller}, p.cd, p.p, p.c, p.f, {now}, {now}, {run} "  # noqa: S608
                         f"FROM {_page_table(OFFER_ROW, vendor, 'offers')} JOIN ids ON ids.e = p.e "
                         f"ORDER BY p.e, p.s, p.cd {offer_conflict}")
        statements["products_after"] = f"{ids}, {last_seen} {offers_of_ids}"
        statements["products_after_seen"] = f"{ids}, {last_seen}, {seen} {offers_of_ids}"
    return statements


def _decimal(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _merged_sellers(items: list[ProductItem], details: list[SellerItem]) -> dict[str, SellerItem]:
    """Every seller the page names (the items', their offers', the looked-up ones), once: a
    version with a name wins over one that only carries the id."""
    sellers: dict[str, SellerItem] = {}
    named = [item.seller for item in items if item.seller]
    named += [offer.seller for item in items for offer in item.offers]
    for seller in (*named, *details):
        known = sellers.get(seller.external_id)
        if known is None or seller.name or not known.name:
            sellers[seller.external_id] = seller
    return sellers


def page_params(*, platform: str, items: list[ProductItem], run_id: int | None, category_id: int | None,
                now, sellers: list[SellerItem] = ()) -> tuple[dict, dict, dict]:
    """The parameters of page_sql's statements: (sellers', products', offers'). A page that
    lists an item, a seller or an offer twice stores its last version."""
    products = {item.external_id: item for item in items}
    offers = {(key, offer.seller.external_id, offer.condition[:64]): offer
              for key, item in products.items() for offer in item.all_offers()}
    common = {"platform": platform, "run": run_id, "now": now}
    seller_rows = [
        {"e": key, "n": s.name[:255], "fs": s.feedback_score, "fp": _decimal(s.feedback_percent),
         "at": s.account_type[:16], "co": s.country[:2]}
        for key, s in _merged_sellers(items, list(sellers)).items()
    ]
    product_rows = [
        {"e": key, "t": item.title[:500], "p": _decimal(item.price), "c": item.currency, "u": item.url[:1000],
         "s": item.seller.external_id if item.seller else None, "cd": item.condition[:64],
         "bo": ",".join(item.buying_options)[:64], "lc": item.location_country[:2], "li": item.legacy_id[:32],
         "ci": ",".join(item.category_ids)[:255]}
        for key, item in products.items()
    ]
    offer_rows = [
        {"e": product, "s": seller, "cd": condition, "p": _decimal(offer.price), "c": offer.currency[:3],
         "f": offer.fulfilled_by_platform}
        for (product, seller, condition), offer in offers.items()
    ]
    return ({**common, "rows": json.dumps(seller_rows)},
            {**common, "category": category_id, "rows": json.dumps(product_rows),
             "products": json.dumps(sorted(products))},
            {**common, "offers": json.dumps(offer_rows)})


def upsert_items(*, platform: str, items: list[ProductItem], run_id: int | None,
                 category_id: int | None, sellers: list[SellerItem] = ()) -> int:
    """Store the page's sellers, insert or refresh its products (ON CONFLICT on the unique
    platform + external id), when each was last seen, and their offers: four statements on
    PostgreSQL whatever the page's size. Returns how many sellers were new. A product the page
    returns unchanged is not rewritten (see ProductSeen).

    Sellers are shared by every page of every run, and a few big ones appear on almost every
    page: writing them on each page would serialize all workers on their row locks. So new
    sellers are inserted (ON CONFLICT DO NOTHING locks nothing), and a known seller is
    refreshed once per run — the first page of the run that sees it — by an UPDATE that skips
    (and does not lock) rows this run already refreshed. Rows are written in key order, so
    concurrent pages lock shared rows in the same order (no deadlocks)."""
    with connection.cursor() as inserted, connection.cursor() as cursor:
        _items_execute(inserted, cursor, platform=platform, items=items, run_id=run_id, category_id=category_id,
                       sellers=sellers)
        return len(inserted.fetchall())


def _items_execute(inserted, cursor, *, platform: str, items: list[ProductItem], run_id: int | None,
                   category_id: int | None, sellers: list[SellerItem] = (), seen: bool = False) -> None:
    """Execute upsert_items' statements; `inserted` gets one row per new seller. With `seen`,
    the run's rows of what it has seen (RunProduct, RunSeller) are written too."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    sql = page_sql(connection.vendor, settings.COLLECTION_TITLE_SEARCH)
    seller_params, products, offers = page_params(platform=platform, items=items, run_id=run_id,
                                                  category_id=category_id, now=now, sellers=sellers)
    inserted.execute(sql["sellers_insert"], seller_params)
    cursor.execute(sql["sellers_refresh"], seller_params)
    cursor.execute(sql["products_upsert"], products)
    if "search_queue" in sql and (written := [row[0] for row in cursor.fetchall()]):
        cursor.execute(sql["search_queue"], {"ids": json.dumps(written)})
    if "products_after" in sql:
        cursor.execute(sql["products_after_seen" if seen else "products_after"], {**products, **offers})
    else:
        if offers["offers"] != "[]":  # a page without sellers (e.g. only products) has no offers
            cursor.execute(sql["offers_upsert"], offers)
        cursor.execute(sql["products_last_seen"], products)
        if seen:
            cursor.execute(sql["products_seen"], products)
    if seen:
        cursor.execute(sql["sellers_seen"], sellers_seen_params(platform=platform, items=items, run_id=run_id))


def sellers_seen_params(*, platform: str, items: list[ProductItem], run_id: int) -> dict:
    """The parameters of page_sql's `sellers_seen`: the sellers offering the page's products (an
    item's own seller, its offers')."""
    offered = {item.seller.external_id for item in items if item.seller}
    offered |= {offer.seller.external_id for item in items for offer in item.offers}
    return {"platform": platform, "run": run_id, "sellers": json.dumps(sorted(offered))}


@contextmanager
def _pipelined():
    """On PostgreSQL, the statements executed inside are sent together and their results read
    at the end (psycopg's pipeline mode): one round trip instead of one per statement, and no
    wait for the worker between them while the transaction holds its locks."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.connection.pipeline():
        yield


@cache
def _unit_sql() -> str:
    """The checkpoint's update of the unit: written out, as it runs on every page."""
    table = connection.ops.quote_name(RunUnit._meta.db_table)
    return (
        f"UPDATE {table} SET \"cursor\" = %(cursor)s, pages_done = pages_done + 1, items_done = items_done + %(items)s, "  # noqa: S608
        "attempts = 0, last_error = '', cost = cost + %(spent)s, reserved = %(reserved)s, "
        "reserved_period_id = %(period)s, status = %(status)s, finished_at = %(finished)s, "
        "lease_owner = %(owner)s, lease_expires_at = %(expires)s "
        "WHERE id = %(unit)s AND lease_owner = %(holder)s AND pages_done = %(page)s AND status = %(running)s"
    )


# What PostgreSQL aborts a page's transaction for when another transaction got in its way: a
# deadlock, a serialization failure, or an offer without a seller, when a seller the page found
# at its start was deleted (services/collected.py) while the page waited for its row. The page
# is fetched and paid for: its transaction runs again, and finds the world as it now is.
RETRIED_SQLSTATES = frozenset({"40P01", "40001"})
CHECKPOINT_TRIES = 3


def unit_checkpoint(record: PageCheckpoint) -> CheckpointResult | None:
    """Record the page in one transaction: upsert its items, advance the cursor and counters,
    capture its cost, extend the lease — and reserve the next page when asked. A transaction
    another one got in the way of (`_in_the_way`) runs again, CHECKPOINT_TRIES times in all,
    unless it is part of a caller's transaction, which is then the caller's to retry.

    Returns None and changes nothing when the unit's cursor has already passed this page or
    the caller no longer holds the lease (recovery took the unit over)."""
    search_index.page_stored()  # this process is collecting: its search indexer waits (startup.py)
    for attempt in range(1, 1 if connection.in_atomic_block else CHECKPOINT_TRIES):
        try:
            return _checkpoint(record)
        except Exception as error:  # psycopg's own, from the pipeline, or Django's wrapping it
            if not (cause := _in_the_way(error)):
                raise
            logger.warning("unit %s, page %s: checkpoint aborted by another transaction (%s), attempt %s of %s",
                           record.unit_id, record.page_index + 1, cause, attempt, CHECKPOINT_TRIES)
    return _checkpoint(record)  # the last try: what it raises is the caller's


def _in_the_way(error: BaseException) -> str | None:
    """The SQLSTATE of an error another transaction caused, else None."""
    for raised in (error, error.__cause__):
        sqlstate = getattr(raised, "sqlstate", None)
        if sqlstate in RETRIED_SQLSTATES:
            return sqlstate
        diag = getattr(raised, "diag", None)
        if sqlstate == "23502" and diag and (diag.table_name, diag.column_name) == (Offer._meta.db_table, "seller_id"):
            return sqlstate  # the offer's seller, deleted meanwhile: nothing else leaves it NULL
    return None


def _checkpoint(record: PageCheckpoint) -> CheckpointResult | None:
    page, page_index, unit_id, run_id = record.page, record.page_index, record.unit_id, record.run_id
    now = timezone.now()
    done = page.next_cursor is None
    count = len(page.items)
    spent = min(max(page.cost, Decimal(0)), record.reserved)
    next_amount = None if done else record.next_reservation
    adapt = connection.ops.adapt_datetimefield_value
    cursor_field = RunUnit._meta.get_field("cursor")
    unit_params = {
        "cursor": cursor_field.get_db_prep_save(page.next_cursor, connection), "items": count, "spent": spent,
        "reserved": next_amount or 0, "period": record.period_id if next_amount else None,
        "status": UnitStatus.DONE if done else UnitStatus.RUNNING, "finished": adapt(now) if done else None,
        "owner": "" if done else record.lease_owner,
        "expires": None if done else adapt(now + timedelta(seconds=record.lease_seconds)),
        "unit": unit_id, "holder": record.lease_owner, "page": page_index, "running": UnitStatus.RUNNING,
    }
    with transaction.atomic():
        with connection.cursor() as unit_cursor, connection.cursor() as inserted, connection.cursor() as cursor:
            with _pipelined():
                # The conditional update both checks the lease and the cursor and locks the unit
                # row; the items are sent with it and undone (rollback) if it matched nothing.
                unit_cursor.execute(_unit_sql(), unit_params)
                _items_execute(inserted, cursor, platform=record.platform, items=page.items, run_id=run_id,
                               category_id=record.category_id, sellers=page.sellers,
                               seen=True)
            if not unit_cursor.rowcount:
                transaction.set_rollback(True)
                return None
            new_sellers = len(inserted.fetchall())
        next_reserved = budget_capture_and_reserve(
            run_id=run_id, period_id=record.period_id, reserved=record.reserved, spent=spent, next_amount=next_amount,
            counters={"pages_done": 1, "items_done": count, "sellers_new": new_sellers, "units_done": int(done)},
        )
        if next_amount and not next_reserved:
            RunUnit.objects.filter(pk=unit_id).update(reserved=0, reserved_period_id=None)
        if page.warnings or page.gone or page.unreachable or page.partitioned:
            _page_events(record)
        if page.cost > record.reserved:
            event_write(run_id=run_id, unit_id=unit_id, kind=EventKind.OVERCHARGE,
                        reported=str(page.cost), reserved=str(record.reserved))
        if done or (page.total is not None and page_index == 0):
            category_changes = {"last_collected_at": now} if done else {}
            if page.total is not None:  # the first page tells the category's size
                category_changes.update(known_item_count=page.total, item_count_measured_at=now)
            Category.objects.filter(pk=record.category_id).update(**category_changes)
        if done:
            unit = RunUnit.objects.values("items_done", "cost").get(pk=unit_id)
            event_write(run_id=run_id, unit_id=unit_id, kind=EventKind.UNIT_DONE,
                        pages=page_index + 1, items=unit["items_done"], cost=str(unit["cost"]))
        if record.warn_percent < 100 and spent and (done or page_index % 10 == 0):
            _warn_once(run_id, record.warn_percent)  # checked every tenth page: a warning, not a limit
    return CheckpointResult(items=count, sellers_new=new_sellers, cost=spent, done=done, next_reserved=next_reserved)


def _page_events(record: PageCheckpoint) -> None:
    """What the source said about the page, on the unit's event log (and counters)."""
    page, run_id, unit_id = record.page, record.run_id, record.unit_id
    for warning in page.warnings:
        event_write(run_id=run_id, unit_id=unit_id, kind=EventKind.SOURCE_WARNING, code=untrusted_text(warning.code, limit=20),
                    message=untrusted_text(warning.message), page=record.page_index + 1)
    if page.partitioned:
        event_write(run_id=run_id, unit_id=unit_id, kind=EventKind.PARTITIONED, detail=page.partitioned[:500])
    if page.gone:
        reason = untrusted_text(page.gone)
        RunUnit.objects.filter(pk=unit_id).update(note=reason)
        event_write(run_id=run_id, unit_id=unit_id, kind=EventKind.CATEGORY_GONE, reason=reason)
    if page.unreachable:
        RunUnit.objects.filter(pk=unit_id).update(items_unreachable=F("items_unreachable") + page.unreachable)
        CollectionRun.objects.filter(pk=run_id).update(items_unreachable=F("items_unreachable") + page.unreachable)
        event_write(run_id=run_id, unit_id=unit_id, kind=EventKind.INCOMPLETE, listings=page.unreachable,
                    reason="a partition above the source's result cap that no filter splits further")


def _warn_once(run_id: int, percent: int) -> None:
    threshold = F("budget_cap") * percent / 100
    if CollectionRun.objects.filter(pk=run_id, budget_warned_at__isnull=True, spent__gte=threshold).update(
        budget_warned_at=timezone.now()
    ):
        event_write(run_id=run_id, kind=EventKind.BUDGET_WARNING, percent=percent)
