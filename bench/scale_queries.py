#!/usr/bin/env python
"""Every list, filter, search and sort the API and the admin offer, timed against a primary-key
detail request in the same run, on a database filled by bench/scale_data.py; and the CSV export's
speed and memory.

    .venv/bin/python bench/scale_data.py --products 1000000     # once: collection_scale_1m
    .venv/bin/python bench/scale_queries.py --database-url postgres://root@127.0.0.1:5432/collection_scale_1m \\
        --json /tmp/scale-1m.json
    .venv/bin/python bench/scale_queries.py --database-url …/collection_scale_10m --compare /tmp/scale-1m.json

Each request goes through the whole Django stack in process (middleware, authentication, DRF,
the admin), median of 10 after one warm-up. Targets (issue #16): every request ≤ 10× the detail
request's median, and ≤ 2× its own time at 1,000,000 products (flat in the data size). CSV:
≥ 50,000 rows/s with peak memory flat in the row count. Deletion: how long each batch of
deleting 5,000 products and 1,000 sellers takes (rolled back: the data stays).
"""

import argparse
import json
import os
import resource
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
API = "/api/collection/"
RUNS = 10


def setup(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["API_THROTTLE_USER"] = "1000000/minute"
    os.environ["ALLOWED_HOSTS"] = "testserver"
    import django

    django.setup()


def cases(data: dict) -> list[tuple[str, str]]:
    """(label, url): what an operator or a client asks, with values that exist in the data."""
    newest_run, product, seller = data["newest_run"], data["product"], data["seller"]
    return [
        ("api products: detail (baseline)", f"{API}products/{{detail}}/"),
        ("api products: list", f"{API}products/"),
        ("api products: page 2 (cursor)", "next-of:" + f"{API}products/"),
        ("api products: newest first", f"{API}products/?ordering=-first_seen_at"),
        ("api products: newest first, page 2", "next-of:" + f"{API}products/?ordering=-first_seen_at"),
        ("api products: search common word", f"{API}products/?search=phone"),
        ("api products: search part of a word", f"{API}products/?search=phon"),
        ("api products: search two words", f"{API}products/?search=wireless%20phone"),
        ("api products: search a model code (~100 products)", f"{API}products/?search={data['rare_code']}"),
        ("api products: search no match", f"{API}products/?search=zzzqqq"),
        ("api products: search exact external id", f"{API}products/?search={product['external_id']}"),
        ("api products: platform", f"{API}products/?platform=amazon"),
        ("api products: condition", f"{API}products/?condition=FOR_PARTS"),
        ("api products: a condition no product has", f"{API}products/?condition=USED_GOOD"),
        ("api products: country", f"{API}products/?location_country=JP"),
        ("api products: a country no product has", f"{API}products/?location_country=IS"),  # rare: the worst
        ("api products: category", f"{API}products/?category={product['category_id']}"),
        ("api products: seller (offers)", f"{API}products/?seller={seller['id']}"),
        ("api products: price range", f"{API}products/?price_min=10&price_max=20"),  # 1 % of prices
        ("api products: narrow price range", f"{API}products/?price_min=10&price_max=10.05"),  # 0.006 %
        ("api products: price range of 0.05 %", f"{API}products/?price_min=10&price_max=10.49"),
        ("api products: buying option", f"{API}products/?buying_option=AUCTION"),
        ("api products: first seen in run", f"{API}products/?first_seen_run={newest_run}"),
        ("api products: seen in run", f"{API}products/?run={newest_run}"),
        ("api sellers: list", f"{API}sellers/"),
        ("api sellers: search name", f"{API}sellers/?search=camera"),
        ("api sellers: search exact id", f"{API}sellers/?search={seller['external_id']}"),
        ("api sellers: country", f"{API}sellers/?country=JP"),
        ("api sellers: account type", f"{API}sellers/?account_type=INDIVIDUAL"),
        ("api sellers: feedback", f"{API}sellers/?feedback_score_min=99990"),  # 0.01 %: part of a page at 1M
        ("api sellers: feedback of 0.1 %", f"{API}sellers/?feedback_score_min=99900"),
        ("api sellers: newest first", f"{API}sellers/?ordering=-first_seen_at"),
        ("api sellers: seen in run", f"{API}sellers/?run={newest_run}"),
        ("api offers: list", f"{API}offers/"),
        ("api offers: of a product", f"{API}offers/?product={product['id']}"),
        ("api offers: of a seller", f"{API}offers/?seller={seller['id']}"),
        ("api offers: condition", f"{API}offers/?condition=FOR_PARTS"),
        ("api offers: a condition no offer has", f"{API}offers/?condition=USED_GOOD"),
        ("api offers: fulfilled by platform", f"{API}offers/?fulfilled_by_platform=true"),
        ("api offers: platform", f"{API}offers/?platform=amazon"),
        ("api offers: price range", f"{API}offers/?price_min=10&price_max=20"),
        ("api offers: narrow price range", f"{API}offers/?price_min=10&price_max=10.05"),
        ("api offers: newest first", f"{API}offers/?ordering=-first_seen_at"),
        ("api runs: list", f"{API}runs/"),
        ("api runs: completed", f"{API}runs/?status=completed"),
        ("api runs: oldest first", f"{API}runs/?ordering=created_at"),
        ("api runs: events of one", f"{API}runs/{newest_run}/events/"),
        ("api categories: list", f"{API}categories/"),
        ("admin products: detail (admin baseline)", f"/admin/collection/product/{product['id']}/change/"),
        ("admin products", "/admin/collection/product/"),
        ("admin products: search word", "/admin/collection/product/?q=phone"),
        ("admin products: search two words", "/admin/collection/product/?q=wireless+phone"),
        ("admin products: search exact id", f"/admin/collection/product/?q={product['external_id']}"),
        ("admin products: platform", "/admin/collection/product/?platform=amazon"),
        ("admin products: newest first", "/admin/collection/product/?o=-10"),
        ("admin products: seen in run", f"/admin/collection/product/?run={newest_run}"),
        ("admin sellers", "/admin/collection/seller/"),
        ("admin sellers: search name", "/admin/collection/seller/?q=camera"),
        ("admin sellers: country", "/admin/collection/seller/?country=JP"),
        ("admin offers", "/admin/collection/offer/"),
        ("admin offers: fulfilled by platform", "/admin/collection/offer/?fulfilled_by_platform__exact=1"),
        ("admin runs", "/admin/collection/collectionrun/"),
    ]


def measure(url: str, *, compare: str | None = None, out: str | None = None, csv_rows: int = 300_000,
            only: str | None = None, deletions: bool = True) -> dict:
    setup(url)
    from django.contrib.auth.models import User
    from django.test import Client
    from rest_framework.authtoken.models import Token

    from collection.models import CollectionRun, Product, Seller

    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", password=secrets.token_urlsafe(24))  # logged in by force_login and a token only
    token = Token.objects.get_or_create(user=user)[0].key
    api = Client(HTTP_AUTHORIZATION=f"Token {token}", HTTP_ACCEPT="application/json")
    admin = Client()
    admin.force_login(user)
    total = Product.objects.order_by("-pk").values_list("pk", flat=True).first()
    data = {
        "newest_run": CollectionRun.objects.order_by("-pk").values_list("pk", flat=True).first(),
        "product": Product.objects.values("id", "external_id", "category_id").get(pk=total // 2),
        "seller": Seller.objects.values("id", "external_id").get(pk=Seller.objects.order_by("-pk").first().pk // 2),
        "rare_code": Product.objects.get(pk=total // 3).title.split()[-1],
    }
    detail_ids = [total // 11 * k for k in range(1, RUNS + 1)]

    def get(path: str, i: int = 0):
        client = admin if path.startswith("/admin/") else api
        if path.startswith("next-of:"):
            path = client.get(path.removeprefix("next-of:")).json()["next"]
        started = time.perf_counter()
        response = client.get(path.format(detail=detail_ids[i]))
        if response.streaming:
            b"".join(response.streaming_content)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, (path, response.status_code, response.content[:300])
        return elapsed

    results = {}
    for label, path in cases(data):
        if only and only not in label and "baseline" not in label:
            continue
        get(path)
        results[label] = round(statistics.median(get(path, i) for i in range(RUNS)), 2)
    api_detail, admin_detail = results["api products: detail (baseline)"], results["admin products: detail (admin baseline)"]
    before = json.loads(Path(compare).read_text())["requests"] if compare else {}
    print(f"\n{total:,} products — median of {RUNS} ms; bound: 10 × the detail request of the same stack "
          f"(API {10 * api_detail:.1f} ms, admin {10 * admin_detail:.1f} ms)")
    header = f"{'request':46} {'ms':>8} {'× detail':>9}"
    print(header + (f" {'ms before':>10} {'× before':>9}" if before else ""))
    for label, ms in results.items():
        baseline = admin_detail if label.startswith("admin") else api_detail
        line = f"{label:46} {ms:8.1f} {ms / baseline:9.1f}"
        if label in before:
            line += f" {before[label]:10.1f} {ms / before[label]:9.2f}"
        flag = " !" if ms > 10 * baseline or (label in before and ms > 2 * before[label]) else ""
        print(line + flag)
    export = csv_export(csv_rows) if csv_rows else None
    print(f"\nCSV export of products: {export}")
    deleted = deletion() if deletions else None
    print(f"Deleting (batches of 500 products, of 100 sellers): {deleted}")
    report = {"products": total, "requests": results, "csv": export, "deletion": deleted}
    if out:
        Path(out).write_text(json.dumps(report, indent=1))
    return report


def csv_export(rows: int) -> dict:
    """The exports' own streaming (collection.exports.CsvExport, as the API, admin and command
    use it): rows a second, and peak memory after a quarter and after all of the rows; then, for
    comparison in the same run, the same rows through Python's csv writer (the export before
    COPY, and what SQLite still uses)."""
    from collection.exports import PRODUCT_FIELDS, CsvExport
    from collection.models import Product

    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def stream(copy: bool) -> tuple[CsvExport, float, int, float | None]:
        export, size, at_quarter = CsvExport(Product.objects.filter(pk__lte=rows), PRODUCT_FIELDS, copy=copy), 0, None
        started = time.perf_counter()
        for text in export:
            size += len(text)
            if at_quarter is None and export.rows >= rows // 4:
                at_quarter = round(peak_mb(), 1)
        return export, time.perf_counter() - started, size, at_quarter

    export, seconds, size, at_quarter = stream(copy=True)
    figures = {"rows": export.rows, "rows_per_second": round(export.rows / seconds), "characters": size,
               "peak_mb_at_quarter": at_quarter, "peak_mb_at_end": round(peak_mb(), 1)}
    written, seconds, _, _ = stream(copy=False)
    figures["python_writer_rows_per_second"] = round(written.rows / seconds)
    return figures


def deletion(products: int = 5000, sellers: int = 1000) -> dict:
    """Deleting through services.collected (as the admin does): `products` products and
    `sellers` sellers spread over the tables, a batch at a time, timed per batch: 500 products
    (one transaction: what it holds its locks for), 100 sellers (a transaction for each 500 of
    their products, then one for the sellers). Inside one transaction rolled back at the end:
    the database stays as generated (each transaction a savepoint instead of a commit)."""
    from django.db import transaction

    from collection.models import Product, Seller
    from collection.services.collected import BATCH, SELLER_BATCH, products_delete, sellers_delete

    def batches(model, count: int, batch: int, delete) -> dict:
        last = model.objects.order_by("-pk").values_list("pk", flat=True).first()
        ids = list(range(last // count, last + 1, last // count))[:count]
        times = []
        for at in range(0, len(ids), batch):
            started = time.perf_counter()
            delete(model.objects.filter(pk__in=ids[at:at + batch]))
            times.append((time.perf_counter() - started) * 1000)
        return {"rows": len(ids), "batches": len(times), "batch_ms_median": round(statistics.median(times), 1),
                "batch_ms_max": round(max(times), 1)}

    with transaction.atomic():
        figures = {"products": batches(Product, products, BATCH, lambda rows: products_delete(products=rows)),
                   "sellers": batches(Seller, sellers, SELLER_BATCH, lambda rows: sellers_delete(sellers=rows))}
        transaction.set_rollback(True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgres://root@127.0.0.1:5432/collection_scale_1m")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--compare", help="figures of a smaller database (--json of an earlier run)")
    parser.add_argument("--csv-rows", type=int, default=300_000, help="0: no export")
    parser.add_argument("--only", help="the requests whose label holds this text (and the baselines)")
    parser.add_argument("--no-deletion", action="store_true", help="skip timing the deletion of 5,000 products and 1,000 sellers")
    args = parser.parse_args()
    measure(args.database_url, compare=args.compare, out=args.json, csv_rows=args.csv_rows, only=args.only,
            deletions=not args.no_deletion)


if __name__ == "__main__":
    main()
