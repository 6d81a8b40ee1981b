"""Shared plumbing for the collection commands: JSON output and domain errors → exit codes."""

from __future__ import annotations

import json
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError

from collection.models import CollectionRun
from collection.services import runs as run_services
from collection.services.errors import BudgetExceeded, CollectionError, InvalidInput, InvalidTransition


class CollectionCommand(BaseCommand):
    """Subclasses implement `run(**options)`; domain errors become a clear message and a
    non-zero exit code (2 bad input, 3 over budget, 4 illegal transition, 1 otherwise)."""

    json_option = True

    def add_arguments(self, parser):
        if self.json_option:
            parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args, **options):
        try:
            return self.run(*args, **options)
        except BudgetExceeded as error:
            if options.get("json"):
                self.print_json({"code": error.code, "detail": error.reason, "estimate": error.estimate})
            raise CommandError(f"over budget: {error.reason}", returncode=3) from None
        except InvalidInput as error:
            raise CommandError(f"invalid input: {error}", returncode=2) from None
        except InvalidTransition as error:
            raise CommandError(str(error), returncode=4) from None
        except CollectionError as error:
            raise CommandError(str(error)) from None

    def print_json(self, data) -> None:
        self.stdout.write(json.dumps(data, indent=2, default=_default))


def _default(value):
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot serialize {type(value).__name__}")


RUN_FIELDS = ("id", "source", "status", "pause_reason", "budget_cap", "spent", "reserved", "estimated_cost",
              "currency", "units_total", "units_done", "units_failed", "pages_done", "items_done", "sellers_new",
              "error", "created_at", "started_at", "paused_at", "finished_at")


def run_as_dict(run: CollectionRun) -> dict:
    data = {name: getattr(run, name) for name in RUN_FIELDS}
    data["progress"] = run.progress_percent
    return data


def transition_command(action: str, verb: str) -> type[CollectionCommand]:
    """The pause / resume / cancel commands: one service call per run id."""
    service = getattr(run_services, f"run_{action}")

    class Command(CollectionCommand):
        help = f"{verb.capitalize()} runs (by id), through the same service as the admin and the API."

        def add_arguments(self, parser):
            super().add_arguments(parser)
            parser.add_argument("runs", nargs="+", type=int, help="run ids")

        def run(self, *, runs: list[int], json, **options):
            done = [service(run_id=run_id) for run_id in runs]
            if json:
                self.print_json([run_as_dict(run) for run in done])
            else:
                for run in done:
                    self.stdout.write(f"run #{run.pk}: {run.status}")

    return Command


def add_run_arguments(parser) -> None:
    """source, categories, --cap, --no-probe: shared by collection_estimate and collection_run."""
    parser.add_argument("source", help="source key, e.g. demo")
    parser.add_argument("categories", nargs="+", help="category ids")
    parser.add_argument("--cap", help="the run's budget cap (default: the per-run cap in settings)")
    parser.add_argument("--no-probe", action="store_true",
                        help="Do not ask the source for unknown categories' sizes; use the settings default.")
