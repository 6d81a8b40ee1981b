"""Title search entries (ProductSearch), written after the pages that stored the products.

The checkpoint queues each product it inserts or changes (ProductSearchQueue: a narrow key, far
cheaper than the trigram index a title search needs); worker processes take the queue in
batches every COLLECTION_SEARCH_INDEX_SECONDS (startup.py) and write the entries, so a new
title is searchable within seconds. `manage.py collection_search_index` does it by hand, and
with `--all` writes every product's entry again (after restoring a database, or a migration
that ran while an older worker stored pages).

Indexing is CPU and write work that would slow the pages down where the database is what paces
them (a source that answers at once): a worker process that stored a page within the last
COLLECTION_SEARCH_INDEX_SECONDS leaves indexing for later, up to COLLECTION_SEARCH_MAX_LAG_SECONDS
(`due`), and on PostgreSQL one process indexes at a time (an advisory lock: concurrent writers
of one trigram index wait on its pending list), so that a run's pages come first and its
products are searchable a few seconds after it ends, or after at most that lag while it runs.

A batch is one short transaction: it takes up to `batch` queued products (SKIP LOCKED: workers
share the queue without waiting for each other), removes them from the queue and writes their
entries from the products' rows as they are then. A product changed again meanwhile is queued
again by that page (which waits for this transaction: checkpoint.py), so its next entry has the
new title. An
entry whose title did not change is not rewritten (a page that changed a product's price).
"""

from __future__ import annotations

import json
import time

from django.conf import settings
from django.db import connection, transaction

from collection.models import Product, ProductSearch, ProductSearchQueue

BATCH = 2000
LOCK = 0x5EA12C4  # the advisory lock of the one indexing process (PostgreSQL)
_page_stored_at: float | None = None  # when this process last stored a page (monotonic)


def page_stored() -> None:
    """Called by the checkpoint: this process is collecting."""
    global _page_stored_at
    _page_stored_at = time.monotonic()


def due(last_pass: float, now: float | None = None) -> bool:
    """Whether this process's indexer should run now: it stored no page lately, or its last pass
    (`last_pass`, monotonic) is COLLECTION_SEARCH_MAX_LAG_SECONDS old."""
    now = time.monotonic() if now is None else now
    collecting = _page_stored_at is not None and now - _page_stored_at < settings.COLLECTION_SEARCH_INDEX_SECONDS
    return not collecting or now - last_pass >= settings.COLLECTION_SEARCH_MAX_LAG_SECONDS


def _upsert_sql() -> str:
    search, product = (connection.ops.quote_name(m._meta.db_table) for m in (ProductSearch, Product))
    ids = "= ANY(%s)" if connection.vendor == "postgresql" else "IN (SELECT value FROM json_each(%s))"
    return (f"INSERT INTO {search} (product_id, external_id, title_upper) "  # noqa: S608
            f"SELECT id, external_id, UPPER(title) FROM {product} "
            f"WHERE id {ids} ORDER BY id ON CONFLICT (product_id) DO UPDATE "
            f"SET title_upper = excluded.title_upper WHERE {search}.title_upper <> excluded.title_upper")


def _write(ids: list[int]) -> None:
    param = ids if connection.vendor == "postgresql" else json.dumps(ids)
    with connection.cursor() as cursor:
        cursor.execute(_upsert_sql(), [param])


def index_pending(*, batch: int = BATCH, max_seconds: float | None = None, alone: bool = False) -> int | None:
    """Write the entries of queued products, `batch` a transaction, until the queue is empty (or,
    with `max_seconds`, that long has passed: the rest goes next time). Returns how many
    products were taken from the queue; with `alone`, None when another process is indexing
    (PostgreSQL's advisory lock LOCK; elsewhere one writer at a time anyway)."""
    if not alone or connection.vendor != "postgresql":
        return _index_pending(batch, max_seconds)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK])
        if not cursor.fetchone()[0]:
            return None
        try:
            return _index_pending(batch, max_seconds)
        finally:  # a session's lock outlives its transactions: released here, or with the connection
            cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK])


def _index_pending(batch: int, max_seconds: float | None) -> int:
    deadline = time.monotonic() + max_seconds if max_seconds else None
    done = 0
    queue = connection.ops.quote_name(ProductSearchQueue._meta.db_table)
    skip_locked = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    take = (f"DELETE FROM {queue} WHERE product_id IN (SELECT product_id FROM {queue} "  # noqa: S608
            f"ORDER BY product_id LIMIT %s{skip_locked}) RETURNING product_id")
    while deadline is None or time.monotonic() < deadline:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(take, [batch])
            ids = sorted(row[0] for row in cursor.fetchall())
            if not ids:
                break
            _write(ids)
        done += len(ids)
    return done


def index_all(*, batch: int = BATCH * 5, progress=None) -> int:
    """Write every product's entry again (entries that are right are left as they are): the
    products are queued, `batch` at a time in id order, and each batch indexed as the queue is,
    so that a page renaming a product meanwhile is indexed after this, never overwritten by the
    title read before it. `progress(done)` is called after each batch."""
    done, after = 0, 0
    while ids := list(Product.objects.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:batch]):
        ProductSearchQueue.objects.bulk_create([ProductSearchQueue(product_id=pk) for pk in ids], ignore_conflicts=True)
        _index_pending(BATCH, None)
        done, after = done + len(ids), ids[-1]
        if progress:
            progress(done)
    return done


def pending_count(*, cap: int = 10_000) -> int:
    """How many products wait for their entry, counted up to `cap` (+1 past it)."""
    return ProductSearchQueue.objects.all()[: cap + 1].count()
