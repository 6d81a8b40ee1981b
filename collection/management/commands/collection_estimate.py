from collection.management.base import CollectionCommand, add_run_arguments
from collection.services.estimate import estimate


class Command(CollectionCommand):
    help = "Estimate a run: items, pages and cost per category, the applicable cap, and whether it fits."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        add_run_arguments(parser)

    def run(self, *, source, categories, cap, no_probe, json, **options):
        est = estimate(source=source, category_ids=categories, budget_cap=cap, probe=not no_probe).as_dict()
        if json:
            self.print_json(est)
        else:
            for row in est["categories"]:
                known = "" if row["items_known"] else " (default count)"
                self.stdout.write(f"{row['id']:>6}  {row['name'][:40]:<40} {row['items']:>8} items{known:<16} "
                                  f"{row['pages']:>5} pages  {row['cost']:>12}")
            self.stdout.write(f"total: {est['items']} items, {est['pages']} pages, {est['total_cost']} {est['currency']}")
            if est["pacing"]:
                self.stdout.write(est["pacing"])
            self.stdout.write(f"cap: {est['cap']} {est['currency']} ({est['cap_reason']})")
            if est["probe_calls"]:
                self.stdout.write(f"probed {est['probe_calls']} unknown categories (counted against the quota)")
            self.stdout.write("within budget" if est["within_budget"] else f"OVER BUDGET: {est['reason']}")
        if not est["within_budget"]:
            raise SystemExit(3)
