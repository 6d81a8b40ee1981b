import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from collection.services.categories import CategoryFileError, categories_load
from collection.sources import UnknownSource, get_source


class Command(BaseCommand):
    help = ("Load categories for a source from a JSON file: an eBay category tree (categoryTreeNodes / "
            "rootCategoryNode with childCategoryTreeNodes), Keepa category objects (a /category answer, "
            "{\"categories\": {id: {catId, name, parent, children, productCount}}}, or a list of them) or a flat "
            "list of {id, name}. Idempotent; a bad file writes nothing.")

    def add_arguments(self, parser):
        parser.add_argument("source", help="source key, e.g. ebay or keepa")
        parser.add_argument("file", help="path to the JSON file")

    def handle(self, *, source, file, **options):
        try:
            platform = get_source(source).platform
        except UnknownSource as error:
            raise CommandError(str(error)) from None
        try:
            data = json.loads(Path(file).read_text(encoding="utf-8"))
        except OSError as error:
            raise CommandError(f"cannot read {file}: {error.strerror}") from None
        except (ValueError, UnicodeDecodeError) as error:
            raise CommandError(f"{file} is not valid JSON: {error}") from None
        try:
            created, updated = categories_load(platform=platform, data=data)
        except CategoryFileError as error:
            raise CommandError(f"{file}: {error}") from None
        self.stdout.write(f"{platform} categories: {created} created, {updated} updated")
