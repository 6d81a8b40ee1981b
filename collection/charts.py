"""Server-side SVG: a run's spend over time against its cap (no script, no CDN)."""

from __future__ import annotations

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from collection.models import CollectionRun

WIDTH, HEIGHT, PAD = 560, 180, 36


def spend_points(run: CollectionRun) -> list[tuple[float, float]]:
    """(seconds since start, spent) from the run's samples, starting at 0."""
    if not run.started_at:
        return []
    start = run.started_at
    points = [(0.0, 0.0)]
    for at, spent in run.spend_samples.values_list("at", "spent"):
        points.append((max((at - start).total_seconds(), 0.0), float(spent)))
    end = run.finished_at or timezone.now()
    points.append((max((end - start).total_seconds(), points[-1][0]), float(run.spent)))
    return points


def spend_chart_svg(run: CollectionRun) -> str:
    """Spend over time, scaled to what matters: the spend and the estimate. The cap is a line
    when it is near them, else a label saying where it is (a cap far above would flatten the
    line to nothing)."""
    points = spend_points(run)
    if not points:
        return "Not started yet."
    cap, estimate = float(run.budget_cap), float(run.estimated_cost)
    spent = max(y for _, y in points)
    scale = max(spent, estimate, 0.01)
    cap_shown = cap <= scale * 2
    top = (max(scale, cap) if cap_shown else scale) * 1.1
    span = max(points[-1][0], 1.0)

    def xy(x, y):
        return (PAD + x / span * (WIDTH - 2 * PAD), HEIGHT - PAD - y / top * (HEIGHT - 2 * PAD))

    line = " ".join(f"{px:.1f},{py:.1f}" for px, py in (xy(x, y) for x, y in points))
    _, cap_y = xy(0, cap)
    _, est_y = xy(0, estimate)
    last_x, last_y = xy(*points[-1])
    cap_mark = format_html(
        '<line x1="{p}" y1="{cy}" x2="{r}" y2="{cy}" stroke="#dc3545" stroke-dasharray="4 3"/>'
        '<text x="{r}" y="{cyt}" text-anchor="end" font-size="11" fill="#dc3545">cap {cap} {cur}</text>',
        p=PAD, r=WIDTH - PAD, cy=f"{cap_y:.1f}", cyt=f"{cap_y - 4:.1f}", cap=f"{run.budget_cap:.2f}", cur=run.currency,
    ) if cap_shown else format_html(
        '<text x="{r}" y="{y}" text-anchor="end" font-size="11" fill="#dc3545">cap {cap} {cur} (far above)</text>',
        r=WIDTH - PAD, y=PAD - 6, cap=f"{run.budget_cap:.2f}", cur=run.currency,
    )
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
        'aria-label="spend over time against the estimate and the cap" style="color:var(--body-fg,#333)">'
        '<line x1="{p}" y1="{b}" x2="{r}" y2="{b}" stroke="currentColor" stroke-opacity=".4"/>'
        '<line x1="{p}" y1="{p}" x2="{p}" y2="{b}" stroke="currentColor" stroke-opacity=".4"/>'
        '{cap_mark}'
        '<line x1="{p}" y1="{ey}" x2="{r}" y2="{ey}" stroke="currentColor" stroke-opacity=".5" stroke-dasharray="2 4"/>'
        '<text x="{p2}" y="{eyb}" font-size="11" fill="currentColor" fill-opacity=".7">estimate {est} {cur}</text>'
        '<polyline fill="none" stroke="#0d6efd" stroke-width="2" points="{line}"/>'
        '<text x="{p}" y="{h2}" font-size="11" fill="currentColor">0 s</text>'
        '<text x="{r}" y="{h2}" text-anchor="end" font-size="11" fill="currentColor">{span} s</text>'
        '<text x="{sx}" y="{sy}" text-anchor="end" font-size="11" fill="#0d6efd">spent {spent} {cur}</text></svg>',
        w=WIDTH, h=HEIGHT, p=PAD, b=HEIGHT - PAD, r=WIDTH - PAD, cap_mark=cap_mark, ey=f"{est_y:.1f}",
        eyb=f"{est_y + 13:.1f}", sx=f"{last_x - 4:.1f}", sy=f"{max(last_y - 6, 12):.1f}",
        est=f"{run.estimated_cost:.2f}", cur=run.currency,
        line=mark_safe(line),  # noqa: S308 (numbers only)
        h2=HEIGHT - PAD + 14, span=f"{span:.0f}", p2=PAD + 6, spent=f"{run.spent:.2f}",
    )
