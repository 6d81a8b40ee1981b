from collection.management.base import CollectionCommand, run_as_dict
from collection.services import runs


class Command(CollectionCommand):
    help = "Resume runs (by id), through the same service as the admin and the API."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("runs", nargs="+", type=int, help="run ids")

    def run(self, *, runs: list[int], json, **options):
        done = [_service(run_id=run_id) for run_id in runs]
        if json:
            self.print_json([run_as_dict(run) for run in done])
        else:
            for run in done:
                self.stdout.write(f"run #{run.pk}: {run.status}")


_service = runs.run_resume
