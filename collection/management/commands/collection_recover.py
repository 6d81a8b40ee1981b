import json

from django.core.management.base import BaseCommand

from collection.services.recovery import recover


class Command(BaseCommand):
    help = "Recover interrupted runs: expired leases, lost triggers, runs with free slots."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Report what would be done; change nothing.")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *, dry_run, json: bool = False, **options):
        report = recover(dry_run=dry_run)
        if json:
            self.stdout.write(_json_dumps(report.as_dict()))
            return
        verb = "would recover" if dry_run else "recovered"
        self.stdout.write(f"{verb} {len(report.expired_leases)} unit(s) with expired leases"
                          + (f": {report.expired_leases}" if report.expired_leases else ""))
        self.stdout.write(f"{'would dispatch' if dry_run else 'dispatched'} again {len(report.redispatched)} "
                          f"unit(s) whose trigger was lost" + (f": {report.redispatched}" if report.redispatched else ""))
        if report.paused_runs:
            self.stdout.write(f"paused as interrupted: runs {report.paused_runs}")
        if report.dispatched_runs:
            self.stdout.write(f"dispatched or ended: runs {report.dispatched_runs}")
        if not dry_run and not report.changed:
            self.stdout.write("nothing to recover")


def _json_dumps(data) -> str:
    return json.dumps(data, indent=2)
