"""Delete what is past its retention now (workers also do it every COLLECTION_PRUNE_EVERY_SECONDS)."""

import json

from collection.management.base import CollectionCommand
from collection.services.retention import prune


class Command(CollectionCommand):
    help = "Delete finished task results, old spend samples, old event noise and idempotency keys past retention."

    def run(self, *args, **options):
        counts = prune()
        if options["json"]:
            self.stdout.write(json.dumps(counts))
        else:
            self.stdout.write(", ".join(f"{kind}: {n:,} deleted" for kind, n in counts.items()) or "retention is off")
