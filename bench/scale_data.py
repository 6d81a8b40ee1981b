#!/usr/bin/env python
"""Fill a PostgreSQL database, through the project's own schema (its migrations), with a year of
collection: products, sellers, offers, runs and their events. Set-based SQL (INSERT … SELECT
generate_series), the secondary indexes dropped during the load and rebuilt from their own
definitions after it, then VACUUM ANALYZE (the visibility map autovacuum would soon have set:
a range's keys are then read from its index alone): 10,000,000 products take minutes, not hours.

    .venv/bin/python bench/scale_data.py --products 1000000            # into collection_scale_1m
    .venv/bin/python bench/scale_data.py --products 10000000 --database-url postgres://root@127.0.0.1:5432/s10m

Shape (per N products): N / 5 sellers, N offers (one a product, as eBay listings), a product in
one of 1,000 categories, N / 200 runs with 5 events each. Titles are six words of a 500-word
vocabulary (each word in about 1 % of titles) plus a model code shared by about 100 products at
any size (eight hex digits, as "3B7F0A91": manufacturers' codes share no prefix with every
title, which sequential zero-padded numbers would); seller names two words and a number.
The newest run saw 20,000 products and 4,000 sellers from all over the tables. Reusable by
other benchmarks: `generate(url, products)` returns what it built.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VOCABULARY = ("phone case cable charger laptop stand lamp desk chair table shoe boot jacket shirt dress watch ring "
         "necklace camera lens tripod drone speaker headphone earbud keyboard mouse monitor printer router modem "
         "battery solar panel garden hose drill saw hammer wrench screwdriver ladder paint brush roller tile "
         "sink faucet shower toilet mirror towel pillow blanket sheet mattress sofa couch rug curtain vase "
         "candle frame clock radio guitar piano violin drum ukulele book novel comic poster sticker mug cup "
         "plate bowl spoon fork knife pan pot kettle toaster blender mixer oven grill cooler tent sleeping "
         "backpack bike helmet glove ball bat racket net skate board ski snow boat kayak paddle fishing rod "
         "reel hook bait rifle scope knife sheath compass map flashlight torch lantern stove fuel filter "
         "bottle flask jar lid box crate bag purse wallet belt hat cap scarf sock sandal slipper heel sneaker "
         "vintage new used refurbished genuine original premium deluxe classic modern retro rustic compact "
         "portable wireless smart digital analog electric manual automatic waterproof heavy light mini large "
         "small medium black white red blue green yellow orange purple pink brown grey silver gold bronze "
         "steel wood bamboo leather cotton wool silk linen nylon plastic glass ceramic stone marble copper "
         "apple samsung sony nikon canon bosch makita dewalt ikea lego nike adidas puma rolex casio seiko "
         "pack set kit bundle lot pair dozen single double triple quad")
WORDS = tuple(VOCABULARY.split())
PLATFORMS = ("ebay", "amazon")
ESTIMATE = json.dumps({  # a run's estimate snapshot, as services.estimate writes it
    "source": "ebay", "currency": "USD", "categories": [], "items": 4000, "pages": 40, "total_cost": "5.0000",
    "cap": "100.0000", "cap_reason": "run", "within_budget": True, "reason": "", "requested_cap": None,
    "month_remaining": "1000.0000", "probe_calls": 0, "tokens": 0, "refill_rate": None, "duration_seconds": None,
    "pacing": ""})
COUNTRIES = ("US", "GB", "DE", "FR", "IT", "ES", "CN", "JP", "CA", "AU")
CONDITIONS = ("NEW", "USED", "REFURBISHED", "FOR_PARTS")


def connect(url: str, dbname: str | None = None):
    import psycopg

    parts = urlparse(url)
    return psycopg.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 5432,
                           user=parts.username or "root", dbname=dbname or parts.path.lstrip("/"), autocommit=True)


def recreate_database(url: str) -> None:
    name = urlparse(url).path.lstrip("/")
    if not name.startswith(("collection_scale", "bench")):  # it is dropped: never a real database
        raise SystemExit(f"refusing to drop {name!r}: use a database named collection_scale_… or bench…")
    with connect(url, "postgres") as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {"DATABASE_URL": url, "PATH": str(Path(sys.executable).parent), "SECRET_KEY": "bench-only"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)


def pick(values: tuple[str, ...], expression: str) -> str:
    """SQL choosing one of `values` by an integer expression (deterministic, evenly spread)."""
    array = "ARRAY[" + ",".join(f"'{v}'" for v in values) + "]"
    return f"({array})[1 + (({expression}) % {len(values)})]"


def mix(column: str, salt: int) -> str:
    """A well-spread non-negative integer from an integer column (multiplicative hash)."""
    return f"(({column}::bigint * {2654435761 + 2 * salt}) % 4294967291)"


TABLES = ("collection_product", "collection_seller", "collection_offer", "collection_collectionrun",
          "collection_runevent", "collection_category", "collection_rununit")
SEEN = ("collection_runproduct", "collection_runseller", "collection_productsearch")  # no sequence of their own


def step(label: str, conn, sql: str, params=()) -> None:
    started = time.perf_counter()
    conn.execute(sql, params or None)
    print(f"  {label}: {time.perf_counter() - started:.1f} s", flush=True)


def generate(url: str, products: int) -> dict:
    sellers, runs, categories = max(products // 5, 1), max(products // 200, 1), 1000
    started = time.perf_counter()
    recreate_database(url)
    with connect(url) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")  # index builds in memory, not in sorted runs on disk
        # The project's secondary indexes, dropped for the load and rebuilt from their definitions,
        # with the statistics targets migrations gave their columns (0020's for the searches).
        indexes = conn.execute(
            "SELECT i.indexname, i.indexdef, (SELECT coalesce(array_agg(ARRAY[a.attnum, a.attstattarget]), '{}') "
            "FROM pg_attribute a WHERE a.attrelid = (quote_ident(i.indexname))::regclass AND a.attstattarget > 0) "
            "FROM pg_indexes i WHERE i.tablename = ANY(%s) AND NOT EXISTS ("
            "SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)", [list(TABLES + SEEN)]).fetchall()
        for name, _, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        print(f"loading {products:,} products ({len(indexes)} indexes dropped for the load)", flush=True)
        step("categories", conn, f"""
            INSERT INTO collection_category (id, platform, external_id, name, parent_external_id, level, is_leaf,
                known_item_count, created_at)
            SELECT g, {pick(PLATFORMS, 'g')}, 'cat-' || g, 'Category ' || g, '', 1, true, {products // categories},
                now() FROM generate_series(1, {categories}) g""")
        step("runs", conn, f"""
            INSERT INTO collection_collectionrun (id, source, status, pause_reason, budget_cap, estimate, estimated_cost,
                spent, reserved, currency, units_total, units_done, units_failed, pages_done, pages_estimated,
                items_done, sellers_new, items_unreachable, error, created_at, updated_at, started_at, finished_at)
            SELECT g, {pick(('ebay', 'keepa'), 'g')}, CASE WHEN g > {runs} - 3 THEN 'running' ELSE 'completed' END,
                '', 100, '{ESTIMATE}', 5, 4.2, 0, 'USD', 3, 3, 0, 40, 40, 4000, 10, 0, '',
                now() - make_interval(mins => {runs} - g), now(), now() - make_interval(mins => {runs} - g), now()
            FROM generate_series(1, {runs}) g""")
        step("events", conn, f"""
            INSERT INTO collection_runevent (created_at, kind, detail, run_id)
            SELECT now() - make_interval(mins => {runs} - r), {pick(('created', 'started', 'page', 'paused', 'completed'), 'k')},
                jsonb_build_object('n', k), r
            FROM generate_series(1, {runs}) r, generate_series(0, 4) k""")
        step("sellers", conn, f"""
            INSERT INTO collection_seller (id, platform, external_id, name, feedback_score, feedback_percent,
                first_seen_at, last_seen_at, times_seen, first_seen_run_id, last_seen_run_id, account_type, country)
            SELECT g, {pick(PLATFORMS, 'g')}, 'S' || lpad(g::text, 9, '0'),
                {pick(WORDS, mix('g', 1))} || ' ' || {pick(WORDS, mix('g', 2))} || ' ' || (g % 997),
                {mix('g', 3)} % 100000, 90 + ({mix('g', 4)} % 1000) / 100.0,
                now() - make_interval(secs => ({sellers} - g) * 3), now(), 1 + g % 7,
                1 + (g % {runs}), 1 + (g % {runs}), {pick(('BUSINESS', 'INDIVIDUAL'), mix('g', 5))},
                {pick(COUNTRIES, mix('g', 6))}
            FROM generate_series(1, {sellers}) g""")
        words = ", ".join(f"{pick(WORDS, mix('g', salt))}" for salt in range(10, 16))
        step("products", conn, f"""
            INSERT INTO collection_product (id, platform, external_id, title, price, currency, url, first_seen_at,
                category_id, first_seen_run_id, seller_id, buying_options, condition, legacy_id,
                location_country, source_category_ids)
            SELECT g, {pick(PLATFORMS, 'g')}, 'P' || lpad(g::text, 10, '0'),
                concat_ws(' ', {words}, upper(left(md5(({mix('g', 17)} % ({products} / 100 + 1))::text), 8))),
                CASE WHEN g % 10 = 0 THEN NULL ELSE 1 + ({mix('g', 18)} % 100000) / 100.0 END, 'USD',
                'https://example.com/item/' || g, now() - make_interval(secs => {products} - g),
                1 + ({mix('g', 19)} % {categories}), 1 + (g % {runs}), 1 + ({mix('g', 20)} % {sellers}),
                {pick(('FIXED_PRICE', 'AUCTION', 'FIXED_PRICE,BEST_OFFER'), mix('g', 21))},
                {pick(CONDITIONS, mix('g', 22))}, '', {pick(COUNTRIES, mix('g', 23))}, ''
            FROM generate_series(1, {products}) g""")
        step("products last seen", conn, """
            INSERT INTO collection_productseen (product_id, last_seen_at) SELECT id, now() FROM collection_product""")
        step("title search entries", conn, """
            INSERT INTO collection_productsearch (product_id, external_id, title_upper)
            SELECT id, external_id, upper(title) FROM collection_product ORDER BY id""")
        step("offers", conn, """
            INSERT INTO collection_offer (condition, price, currency, fulfilled_by_platform, first_seen_at,
                last_seen_at, last_seen_run_id, product_id, seller_id)
            SELECT condition, price, currency, CASE WHEN platform = 'amazon' THEN id % 4 < 2 END, first_seen_at,
                now(), first_seen_run_id, id, seller_id FROM collection_product""")
        step("a unit for the newest run", conn, f"""
            INSERT INTO collection_rununit (id, status, pages_done, items_done, cost, reserved, lease_owner, attempts,
                recoveries, dispatch_token, last_error, task_id, updated_at, category_id, run_id, quota_reserved,
                items_unreachable, note, cursor)
            VALUES (1, 'running', 200, 20000, 0.4, 0, '', 0, 0, '', '', '', now(), 1, {runs}, 0, 0, '', '{{}}')""")
        # Seen in run: the newest run saw 20,000 products and 4,000 sellers spread over all
        # of them (a run sees old products again as well as new ones).
        step("seen in run (newest run)", conn, f"""
            INSERT INTO collection_runproduct (run_id, product_id)
            SELECT DISTINCT {runs}, 1 + {mix('g', 24)} % {products} FROM generate_series(1, 20000) g""")
        step("sellers seen in run (newest run)", conn, f"""
            INSERT INTO collection_runseller (run_id, seller_id)
            SELECT DISTINCT {runs}, 1 + {mix('g', 25)} % {sellers} FROM generate_series(1, 4000) g""")
        for table in TABLES:
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        for name, definition, targets in indexes:
            step(f"index {name}", conn, definition)
            for column, target in targets:
                conn.execute(f'ALTER INDEX "{name}" ALTER COLUMN {column} SET STATISTICS {target}')
        step("vacuum analyze", conn, "VACUUM (ANALYZE)")
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
    built = {"products": products, "sellers": sellers, "offers": products, "runs": runs, "events": runs * 5,
             "seconds": round(time.perf_counter() - started, 1), "size": size}
    print(f"built {built}", flush=True)
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="default: postgres://root@127.0.0.1:5432/collection_scale_<size>")
    args = parser.parse_args()
    label = f"{args.products // 1_000_000}m" if args.products >= 1_000_000 else f"{args.products // 1000}k"
    generate(args.database_url or f"postgres://root@127.0.0.1:5432/collection_scale_{label}", args.products)


if __name__ == "__main__":
    main()
