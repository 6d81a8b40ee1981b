"""Index the products queued for title search now (workers also do it every
COLLECTION_SEARCH_INDEX_SECONDS); with --all, every product again."""

import json

from collection.management.base import CollectionCommand
from collection.services.search_index import index_all, index_pending


class Command(CollectionCommand):
    help = ("Write the title search entries of the products the workers stored since their last pass; "
            "with --all, of every product (after a restore, or a migration that ran beside older workers).")

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--all", action="store_true", help="Index every product again, not only the queued ones.")

    def run(self, *args, **options):
        every = options["all"]
        quiet = options["json"] or options["verbosity"] < 1

        def progress(done: int) -> None:
            if not quiet:
                self.stderr.write(f"{done:,} products indexed…")

        done = index_all(progress=progress) if every else index_pending()
        if options["json"]:
            self.stdout.write(json.dumps({"indexed": done, "all": every}))
        else:
            self.stdout.write(f"{done:,} products indexed" + (" (all)" if every else " (queued)"))
