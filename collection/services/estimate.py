"""Estimates: what a run over some categories will collect and cost, and whether it fits."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from decimal import Decimal

from django.utils import timezone

from collection.models import Category, CollectionSettings
from collection.money import money
from collection.sources import BaseSource, QuotaKind, SourceError, UnknownSource

from .budget import budget_charge_month, period_current
from .categories import leaves_of
from .errors import InvalidInput
from .quota import quota_reserve, quota_settle
from .source_state import source_for
from .validation import parse_id_list, parse_money


def duration_text(seconds: int) -> str:
    """"about 3.5 days", "about 5 hours", "about 12 minutes", "under a minute"."""
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size:
            value = round(seconds / size, 1)
            text = f"{value:g}"
            return f"about {text} {unit}{'' if text == '1' else 's'}"
    return "under a minute"


@dataclass
class CategoryEstimate:
    id: int
    name: str
    external_id: str
    items: int
    items_known: bool
    pages: int
    cost: Decimal
    probed: bool = False
    probe_error: str = ""
    parent: int | None = None  # the chosen parent category this leaf is collected for
    parent_name: str = ""
    partitions: int = 1  # searches the category is split into (above the provider's result cap)
    partition_probes: int = 0  # calls that only find the partitions (included in pages)
    tokens: int = 0  # a token-bucket source's tokens for the category


@dataclass
class Estimate:
    source: str
    currency: str
    categories: list[CategoryEstimate]
    items: int
    pages: int
    total_cost: Decimal
    cap: Decimal
    cap_reason: str  # which cap applies: "run", "settings" or "month"
    within_budget: bool
    reason: str = ""
    requested_cap: Decimal | None = None
    month_remaining: Decimal = Decimal("0")
    probe_calls: int = 0
    # A token-bucket source (Keepa): the tokens the run needs, the key's refill rate (tokens a
    # minute, as the provider last reported it) and how long the run takes at that rate.
    tokens: int = 0
    refill_rate: int | None = None
    duration_seconds: int | None = None
    pacing: str = ""  # the above in a sentence, for operators
    category_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        """JSON-ready (money as decimal strings): the snapshot stored on the run and the API shape."""
        data = asdict(self)
        data.pop("category_ids")
        for key in ("total_cost", "cap", "month_remaining", "requested_cap"):
            data[key] = None if data[key] is None else str(data[key])
        for row in data["categories"]:
            row["cost"] = str(row["cost"])
        return data


def resolve_categories(source: BaseSource, ids: list[int]) -> list[Category]:
    found = {c.pk: c for c in Category.objects.filter(pk__in=ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise InvalidInput({"categories": f"Unknown category ids: {', '.join(map(str, missing))}."})
    wrong = [c.pk for c in found.values() if c.platform != source.platform]
    if wrong:
        raise InvalidInput(
            {"categories": f"Categories {', '.join(map(str, wrong))} are not on platform {source.platform!r}."}
        )
    return [found[i] for i in ids]


def probe_unknown(src: BaseSource, categories: list[Category]) -> tuple[set[int], dict[int, str]]:
    """Ask the source for the item count of categories that have none (one call each, counted
    against its call quota and charged to the month). Returns the ids probed and {id: error}
    for failures, which fall back to the settings default."""
    errors, probed = {}, set()
    counts_calls = src.quota_kind == QuotaKind.DAILY_CALLS
    for category in categories:
        if category.known_item_count is not None:
            continue
        try:
            period = quota_reserve(source=src) if counts_calls else None
        except SourceError as error:
            errors[category.pk] = str(error)
            continue
        used = 0
        try:
            if not budget_charge_month(amount=src.probe_cost()):
                errors[category.pk] = "this month's budget cannot pay for a probe"
                continue
            used = 1
            count = src.probe(category)
        except SourceError as error:
            errors[category.pk] = str(error)
            continue
        finally:
            if period is not None:
                quota_settle(period_id=period.pk, reserved=1, used=used)
        now = timezone.now()
        Category.objects.filter(pk=category.pk).update(known_item_count=count, item_count_measured_at=now)
        category.known_item_count, category.item_count_measured_at = count, now
        probed.add(category.pk)
    return probed, errors


def estimate(*, source: str, category_ids, budget_cap=None, probe: bool = True) -> Estimate:
    """Per-category items (known count, else the settings default), pages and cost; the totals;
    the applicable cap — the smallest of the requested cap, the per-run cap in settings and
    what is left of this month's budget — and whether the estimate fits it."""
    errors: dict = {}
    ids = parse_id_list(category_ids, field="categories", errors=errors)
    requested = parse_money(budget_cap, field="budget_cap", errors=errors, allow_none=True)
    src = None
    try:
        src = source_for(source) if isinstance(source, str) else None
        if src is None:
            errors["source"] = ["Must be a source key."]
    except UnknownSource as error:
        errors["source"] = [str(error)]
    if errors:
        raise InvalidInput(errors)
    missing = src.missing_configuration()
    if missing:
        raise InvalidInput({"source": [missing]})
    leaves = leaves_of(resolve_categories(src, ids))
    categories = [leaf for leaf, _ in leaves]
    parents = {leaf.pk: parent for leaf, parent in leaves}
    probed: set[int] = set()
    probe_errors: dict[int, str] = {}
    if probe and src.can_probe:
        unknown = [c for c in categories if c.known_item_count is None]
        if unknown and requested is not None and requested < src.probe_cost():
            raise InvalidInput({"budget_cap": f"Is below the cost of one size probe ({src.probe_cost()}): "
                                              "raise it, or estimate without probes."})
        probed, probe_errors = probe_unknown(src, categories)

    settings = CollectionSettings.load()
    rows = []
    for category in categories:
        known = category.known_item_count is not None
        items = category.known_item_count if known else settings.default_items_per_category
        plan = src.plan(category=category, expected_items=items)
        rows.append(CategoryEstimate(
            id=category.pk, name=category.name, external_id=category.external_id,
            items=plan.items, items_known=known, pages=plan.pages, cost=money(plan.cost),
            probed=category.pk in probed, probe_error=probe_errors.get(category.pk, ""),
            parent=parents[category.pk].pk if parents[category.pk] else None,
            parent_name=parents[category.pk].name if parents[category.pk] else "",
            partitions=plan.partitions, partition_probes=plan.probe_calls, tokens=plan.tokens,
        ))
    total = sum((r.cost for r in rows), Decimal("0"))

    period = period_current(settings=settings)
    month_left = max(period.remaining, Decimal("0"))
    caps = [("settings", settings.run_budget_cap), ("month", month_left)]
    if requested is not None:
        caps.insert(0, ("run", requested))
    cap_reason, cap = min(caps, key=lambda pair: pair[1])
    cap = money(cap)
    within = total <= cap
    reason = ""
    if not within:
        what = {
            "run": "the requested run cap",
            "settings": "the per-run cap in settings",
            "month": "what is left of this month's budget",
        }[cap_reason]
        reason = f"The estimate {total} {settings.currency} exceeds {what} ({cap} {settings.currency})."
    tokens = sum(r.tokens for r in rows)
    rate = src.refill_rate() if src.quota_kind == QuotaKind.TOKEN_BUCKET else None
    duration = math.ceil(tokens * 60 / rate) if rate else None
    pacing = ""
    if src.quota_kind == QuotaKind.TOKEN_BUCKET:
        pacing = f"Needs about {tokens:,} tokens: " + (
            f"{duration_text(duration)} at the key's {rate:,} tokens a minute." if rate
            else "the key's refill rate is not known yet, so how long it takes is not either.")
    return Estimate(
        tokens=tokens, refill_rate=rate, duration_seconds=duration, pacing=pacing,
        source=src.key, currency=settings.currency, categories=rows,
        items=sum(r.items for r in rows), pages=sum(r.pages for r in rows), total_cost=total,
        cap=cap, cap_reason=cap_reason, within_budget=within, reason=reason,
        requested_cap=requested, month_remaining=money(month_left), category_ids=[c.pk for c in categories],
        probe_calls=len(probed) + len(probe_errors),
    )
