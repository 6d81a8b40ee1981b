#!/usr/bin/env python
"""A 1,000,000-row CSV export to a client reading at 2 MB/s, through the README's production
command (gunicorn, threaded workers, 30 s timeout), on PostgreSQL. Prints whether every row
arrived, the size and the time.

    .venv/bin/python bench/export_slow_client.py [--rows 1000000] [--rate 2000000] [--json]

Uses EXPORT_BENCH_DATABASE_URL (default postgres://root@127.0.0.1:5432/collection_export_bench),
created, migrated and filled (set-based SQL) when needed.
"""

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_URL = os.environ.get("EXPORT_BENCH_DATABASE_URL", "postgres://root@127.0.0.1:5432/collection_export_bench")
PORT = 8790
# The production command from the README, but for the bind address.
GUNICORN = ["-m", "gunicorn", "config.wsgi", "--workers", "3", "--worker-class", "gthread", "--threads", "8",
            "--timeout", "30", "--bind", f"127.0.0.1:{PORT}"]


def ensure_database(env: dict) -> None:
    import psycopg

    url = urlparse(DB_URL)
    name = url.path.lstrip("/")
    with psycopg.connect(url._replace(path="/postgres").geturl(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)


def fill(rows: int) -> None:
    from django.db import connection

    from collection.models import Category, Product, ProductSeen, Seller

    if Product.objects.count() == rows:
        return
    print(f"filling {rows:,} products …", file=sys.stderr)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE collection_product, collection_productseen, collection_seller RESTART IDENTITY CASCADE")
    category, _ = Category.objects.get_or_create(platform="bench", external_id="bench-1", defaults={"name": "Bench"})
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Seller._meta.db_table} (platform, external_id, name, account_type, country, first_seen_at, "  # noqa: S608
            "last_seen_at, times_seen) SELECT 'bench', 'seller-' || g, 'Seller ' || g, '', '', now(), now(), 1 "
            "FROM generate_series(1, 5000) g"
        )
        cursor.execute(
            f"INSERT INTO {Product._meta.db_table} (platform, external_id, title, price, currency, url, condition, "  # noqa: S608
            "buying_options, location_country, legacy_id, source_category_ids, seller_id, category_id, first_seen_at) "
            "SELECT 'bench', 'item-' || g, 'A product title of ordinary length, number ' || g, "
            "(g %% 10000) / 100.0, 'USD', 'https://example.invalid/item/' || g, 'New', 'FIXED_PRICE', 'US', g::text, "
            "'bench-1', 1 + g %% 5000, %s, now() FROM generate_series(1, %s) g",
            [category.pk, rows],
        )
        # Every product the checkpoint stores has a row here, read with each exported product.
        cursor.execute(f"INSERT INTO {ProductSeen._meta.db_table} (product_id, last_seen_at) "  # noqa: S608
                       f"SELECT id, now() FROM {Product._meta.db_table}")


def download(url: str, headers: dict, rate: int) -> tuple[bytes, str, float]:
    import httpx

    received = bytearray()
    started = time.monotonic()
    ending = "complete"
    try:
        with httpx.stream("GET", url, headers=headers, timeout=60) as response:
            response.raise_for_status()
            for chunk in response.iter_raw(chunk_size=65_536):
                received += chunk
                ahead = len(received) / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    except httpx.HTTPError as error:
        ending = f"{type(error).__name__}: {error}"
    return bytes(received), ending, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rate", type=int, default=2_000_000, help="bytes per second the client reads")
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class (the README uses gthread)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    env = {**os.environ, "DATABASE_URL": DB_URL, "DEBUG": "false", "ALLOWED_HOSTS": "127.0.0.1",
           "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50), "COLLECTION_RECOVER_ON_START": "false"}
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    ensure_database(env)
    import django

    django.setup()
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token

    fill(args.rows)
    user, _ = User.objects.get_or_create(username="export-bench", defaults={"is_superuser": True, "is_staff": True})
    token, _ = Token.objects.get_or_create(user=user)

    command = [sys.executable, *GUNICORN]
    command[command.index("gthread")] = args.worker_class
    server = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        import httpx

        for _ in range(60):
            try:
                httpx.get(f"http://127.0.0.1:{PORT}/api/schema/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        body, ending, seconds = download(f"http://127.0.0.1:{PORT}/api/collection/products/?format=csv",
                                         {"Authorization": f"Token {token.key}"}, args.rate)
    finally:
        server.terminate()
        server.wait(timeout=30)
    lines = body.count(b"\n")
    complete = ending == "complete" and lines - 1 == args.rows and body.endswith(b"\n")
    result = {"worker_class": args.worker_class, "rows_expected": args.rows, "rows_received": lines - 1,
              "complete": complete, "ending": ending, "megabytes": round(len(body) / 1e6, 1),
              "seconds": round(seconds, 1), "megabytes_per_second": round(len(body) / 1e6 / seconds, 2)}
    print(json.dumps(result) if args.json else "\n".join(f"{k:>20}: {v}" for k, v in result.items()))
    return 0 if result["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
