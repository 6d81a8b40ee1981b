"""Shared plumbing for the collection commands: JSON output and domain errors → exit codes."""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError

from collection.api.serializers import RunSerializer
from collection.models import CollectionRun
from collection.services import runs as run_services
from collection.services.errors import BudgetExceeded, CollectionError, InvalidInput, InvalidTransition, RunNotFound
from collection.services.lifecycle import ACTION_DONE


def exit_code(error: CollectionError) -> int:
    """The documented exit codes: 2 bad input, 3 over budget, 4 illegal transition (or a quota
    not reset yet), 5 no such run, 1 anything else."""
    if isinstance(error, BudgetExceeded):
        return 3
    if isinstance(error, InvalidInput):
        return 2
    if isinstance(error, InvalidTransition):
        return 4
    if isinstance(error, RunNotFound):
        return 5
    return 1


class CollectionCommand(BaseCommand):
    """Subclasses implement `run(**options)`; domain errors become a clear message and a
    non-zero exit code (see exit_code). A reader that goes away (`… | head`) ends the command
    quietly, as it would a Unix filter."""

    json_option = True

    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except BrokenPipeError:
            # Python's advice: point stdout at devnull so the interpreter's final flush is quiet.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(0)

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
        except CollectionError as error:
            raise CommandError(str(error), returncode=exit_code(error)) from None

    def print_json(self, data) -> None:
        self.stdout.write(json.dumps(data, indent=2, default=_default))


def _default(value):
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def run_as_dict(run: CollectionRun) -> dict:
    """A run as the API shows it (the same serializer: the same names and time formats)."""
    return RunSerializer(run).data


def transition_command(action: str, verb: str) -> type[CollectionCommand]:
    """The pause / resume / cancel commands: one service call per run id."""
    service = getattr(run_services, f"run_{action}")
    past = ACTION_DONE[action]

    class Command(CollectionCommand):
        help = f"{verb.capitalize()} runs (by id), through the same service as the admin and the API."

        def add_arguments(self, parser):
            super().add_arguments(parser)
            parser.add_argument("runs", nargs="+", type=int, help="run ids")

        def run(self, *, runs: list[int], json, **options):
            """Every id is attempted and reported; the exit code says whether any failed."""
            results, failures = [], []
            for run_id in runs:
                try:
                    run = service(run_id=run_id)
                except CollectionError as error:
                    failures.append((exit_code(error), f"run #{run_id}: not {past}: {error}"))
                    results.append({"id": run_id, "error": str(error), "code": error.code})
                else:
                    results.append(run_as_dict(run))
                    if not json:
                        self.stdout.write(f"run #{run.pk}: {run.status}")
            if json:
                self.print_json(results)
            if failures:
                codes = {code for code, _ in failures}
                raise CommandError("; ".join(text for _, text in failures),
                                   returncode=codes.pop() if len(codes) == 1 else 1)

    return Command


def add_run_arguments(parser) -> None:
    """source, categories, --cap, --no-probe: shared by collection_estimate and collection_run."""
    parser.add_argument("source", help="source key, e.g. demo")
    parser.add_argument("categories", nargs="+", help="category ids")
    parser.add_argument("--cap", help="the run's budget cap (default: the per-run cap in settings)")
    parser.add_argument("--no-probe", action="store_true",
                        help="Do not ask the source for unknown categories' sizes; use the settings default.")
