from collection.management.base import CollectionCommand, run_as_dict
from collection.models import CollectionRun
from collection.services.runs import run_get


class Command(CollectionCommand):
    help = "Show runs: a table (the latest, or the ids given), or --json."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("runs", nargs="*", type=int, help="run ids (default: the 20 latest)")
        parser.add_argument("--status", help="only runs with this status")

    def run(self, *, runs, status, json, **options):
        if runs:
            found = [run_get(run_id) for run_id in runs]
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
        if not found:
            self.stdout.write("no runs")
