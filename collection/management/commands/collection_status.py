from django.core.management.base import CommandError

from collection.management.base import CollectionCommand, exit_code, run_as_dict
from collection.models import CollectionRun, RunStatus
from collection.services.errors import RunNotFound
from collection.services.runs import run_get


class Command(CollectionCommand):
    help = "Show runs: a table (the latest, or the ids given), or --json."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("runs", nargs="*", type=int, help="run ids (default: the 20 latest)")
        parser.add_argument("--status", choices=RunStatus.values, help="only runs with this status")

    def run(self, *, runs, status, json, **options):
        missing = []
        if runs:
            found = []
            for run_id in runs:  # every id is looked up and reported; a missing one sets the exit code
                try:
                    found.append(run_get(run_id))
                except RunNotFound as error:
                    missing.append(error)
                    self.stderr.write(str(error))
        else:
            queryset = CollectionRun.objects.all()
            if status:
                queryset = queryset.filter(status=status)
            found = list(queryset[:20])
        if json:
            self.print_json([run_as_dict(run) for run in found])
            return
        header = f"{'id':>6} {'status':<10} {'reason':<12} {'source':<8} {'progress':>8} {'pages':>7} {'items':>8} " \
                 f"{'spent / cap':>22}"
        self.stdout.write(header)
        for run in found:
            self.stdout.write(
                f"{run.pk:>6} {run.status:<10} {run.pause_reason or '-':<12} {run.source:<8} {run.progress_percent:>7}% "
                f"{run.pages_done:>7} {run.items_done:>8} {f'{run.spent:.2f} / {run.budget_cap:.2f}':>22}"
            )
        if not found and not missing:
            self.stdout.write("no runs" + (f" with status {status}" if status else ""))
        if missing:
            raise missing[0] if len(missing) == len(runs) else CommandError(
                f"{len(missing)} of {len(runs)} runs not found", returncode=exit_code(missing[0]))
