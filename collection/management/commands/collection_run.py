from django.core.management.base import CommandError

from collection.management.base import CollectionCommand, add_run_arguments, run_as_dict
from collection.models import RunStatus
from collection.progress import summary, watch
from collection.services import runs


class Command(CollectionCommand):
    help = "Create a run and start it; --wait follows it with a progress bar until it ends."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        add_run_arguments(parser)
        parser.add_argument("--wait", action="store_true", help="Follow the run until it is no longer running.")
        parser.add_argument("--no-start", action="store_true", help="Create the run but leave it pending.")

    def run(self, *, source, categories, cap, wait, no_start, no_probe, json, **options):
        run = runs.run_create(source=source, category_ids=categories, budget_cap=cap, probe=not no_probe)
        if not no_start:
            run = runs.run_start(run_id=run.pk)
        if not json:
            self.stdout.write(f"run #{run.pk} {run.status}: estimate {run.estimated_cost} {run.currency}, "
                              f"cap {run.budget_cap} {run.currency}")
        if wait and not no_start:
            try:
                run = watch(run.pk, stream=self.stderr._out)
            except KeyboardInterrupt:
                answer = input(f"\npause run #{run.pk}? [y/N] ") if self.stdin_is_tty() else "n"
                if answer.strip().lower().startswith("y"):
                    run = runs.run_pause(run_id=run.pk)
                    self.stderr.write(f"paused run #{run.pk}")
                else:
                    self.stderr.write(f"run #{run.pk} keeps running")
                raise SystemExit(130) from None
            if not json:
                self.stdout.write(summary(run))
        if json:
            self.print_json(run_as_dict(run))
        if wait and run.status in (RunStatus.FAILED, RunStatus.CANCELLED):
            raise CommandError(f"run #{run.pk} ended {run.status}")

    @staticmethod
    def stdin_is_tty() -> bool:
        import sys

        return sys.stdin.isatty()
