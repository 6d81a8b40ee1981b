"""Terminal progress for a run: pages, items, spend vs cap and ETA (used by commands)."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

from collection.models import CollectionRun, RunStatus


def watch(run_id: int, *, stream=None, interval: float = 0.25, timeout: float | None = None) -> CollectionRun:
    """Show a progress bar until the run is no longer running (or pending); return it."""
    stream = stream or sys.stderr
    run = CollectionRun.objects.get(pk=run_id)
    started = time.monotonic()
    with tqdm(total=max(run.pages_estimated, 1), unit="page", file=stream, dynamic_ncols=True,
              bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} pages [{elapsed}<{remaining}] {postfix}") as bar:
        while True:
            run.refresh_from_db()
            bar.total = max(run.pages_estimated, run.pages_done, 1)
            bar.n = run.pages_done
            bar.set_postfix_str(
                f"items {run.items_done} · spent {run.spent:.4f}/{run.budget_cap:.4f} {run.currency} · {run.status}",
                refresh=False,
            )
            bar.refresh()
            if run.status not in (RunStatus.RUNNING, RunStatus.PENDING):
                return run
            if timeout is not None and time.monotonic() - started > timeout:
                return run
            time.sleep(interval)


def summary(run: CollectionRun) -> str:
    lines = [
        f"run #{run.pk} {run.status}" + (f" ({run.pause_reason})" if run.pause_reason else ""),
        f"  categories {run.units_done} done, {run.units_failed} failed of {run.units_total}",
        f"  pages {run.pages_done}, items {run.items_done}, new sellers {run.sellers_new}",
        f"  spent {run.spent} of {run.budget_cap} {run.currency} (estimate {run.estimated_cost})",
    ]
    if run.error:
        lines.append(f"  error: {run.error}")
    return "\n".join(lines)
