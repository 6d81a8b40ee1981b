import os
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from collection.models import Category, RunStatus
from collection.progress import summary, watch
from collection.services import runs
from collection.services.demo import demo_categories_load
from collection.services.errors import CollectionError
from collection.services.search_index import index_pending


class Command(BaseCommand):
    help = "Run one demo collection end to end: create, start, execute with worker processes, report."

    def add_arguments(self, parser):
        parser.add_argument("--categories", type=int, default=8, help="demo categories to collect (default 8)")
        parser.add_argument("--items", type=int, default=400, help="items per category (default 400)")
        parser.add_argument("--workers", type=int, default=2, help="db_worker processes to start (default 2)")
        parser.add_argument("--latency-ms", type=int, default=20, help="simulated source latency per page")

    def handle(self, *, categories, items, workers, latency_ms, **options):
        if not 1 <= categories <= 100 or not 1 <= workers <= 16 or not 0 <= items <= 100_000:
            raise CommandError("--categories 1..100, --items 0..100000, --workers 1..16")
        demo_categories_load(count=categories, items=items)
        ids = list(Category.objects.filter(platform="demo", external_id__in=[f"demo-{n}" for n in range(1, categories + 1)])
                   .values_list("pk", flat=True))
        try:
            run = runs.run_create(source="demo", category_ids=ids)
        except CollectionError as error:
            raise CommandError(f"cannot create the demo run: {error}") from None
        self.stdout.write(f"run #{run.pk}: {len(ids)} categories, estimate {run.estimated_cost} {run.currency}, "
                          f"cap {run.budget_cap} {run.currency}")
        env = {**os.environ, "DEMO_LATENCY_MS": str(latency_ms), "COLLECTION_SLICE_SECONDS": "2"}
        procs = [
            subprocess.Popen(
                [sys.executable, "manage.py", "db_worker", "--no-reload", "--interval", "0.1", "-v", "0"],
                cwd=Path(settings.BASE_DIR), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            for _ in range(workers)
        ]
        started = time.monotonic()
        try:
            runs.run_start(run_id=run.pk)
            run = watch(run.pk, stream=self.stderr._out)
        except KeyboardInterrupt:
            runs.run_pause(run_id=run.pk)
            self.stderr.write(f"\npaused run #{run.pk}; resume it with: manage.py collection_resume {run.pk}")
            raise SystemExit(130) from None
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=15)
        index_pending()  # what the workers had not indexed for search when they stopped
        self.stdout.write(summary(run))
        self.stdout.write(f"  took {time.monotonic() - started:.1f}s with {workers} worker(s)")
        if run.status != RunStatus.COMPLETED:
            raise CommandError(f"the demo run ended {run.status}")
