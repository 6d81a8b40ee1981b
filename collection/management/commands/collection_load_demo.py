from django.core.management.base import BaseCommand, CommandError

from collection.services.demo import demo_categories_load


class Command(BaseCommand):
    help = "Create the demo categories (platform 'demo'). Idempotent."

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=8, help="How many categories (default 8).")
        parser.add_argument("--items", type=int, default=None,
                            help="Items each category holds (default: 50, the demo source's default).")

    def handle(self, *, count, items, **options):
        if not 1 <= count <= 10_000:
            raise CommandError("--count must be between 1 and 10000")
        if items is not None and not 0 <= items <= 10_000_000:
            raise CommandError("--items must be between 0 and 10000000")
        created, updated = demo_categories_load(count=count, items=items)
        self.stdout.write(f"demo categories: {created} created, {updated} updated, {count} in all")
