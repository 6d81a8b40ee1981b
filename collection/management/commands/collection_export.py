from django.core.management.base import CommandError

from collection.exports import OFFER_FIELDS, PRODUCT_FIELDS, SELLER_FIELDS, CsvExport
from collection.management.base import CollectionCommand
from collection.models import CollectionRun, Offer, Product, Seller
from collection.selectors import seen_in_run
from collection.services.errors import RunNotFound

FIELDS = {"sellers": (Seller, SELLER_FIELDS), "products": (Product, PRODUCT_FIELDS), "offers": (Offer, OFFER_FIELDS)}


class Command(CollectionCommand):
    help = "Export sellers, products or offers to CSV (streamed: any number of rows), to stdout or --output FILE."
    json_option = False

    def add_arguments(self, parser):
        parser.add_argument("what", choices=sorted(FIELDS))
        parser.add_argument("--output", "-o", help="file to write (default: stdout)")
        parser.add_argument("--platform", help="only this platform")
        parser.add_argument("--run", type=int, help="only rows this run's pages returned (seen in the run, not only "
                                                    "first seen there; offers: last seen in it)")

    def run(self, *, what, output, platform, run, **options):
        model, fields = FIELDS[what]
        queryset = model.objects.all()
        if platform:
            queryset = queryset.filter(**{"product__platform" if model is Offer else "platform": platform})
        if run:
            queryset = seen_in_run(queryset, run)
        if run and not CollectionRun.objects.filter(pk=run).exists():
            raise RunNotFound(run)
        try:
            target = open(output, "w", newline="", encoding="utf-8") if output else self.stdout  # noqa: SIM115
        except OSError as error:
            raise CommandError(f"cannot write {output}: {error.strerror}", returncode=2) from None
        try:
            export = CsvExport(queryset, fields)
            for text in export:
                if output:
                    target.write(text)
                else:
                    target.write(text, ending="")
        finally:
            if output:
                target.close()
        if output:
            self.stderr.write(f"{export.rows} {what} written to {output}")
