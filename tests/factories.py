"""The one set of builders for tests: categories, runs and units. External ids are unique by
construction (the next free number on the platform), so tests never need their own trick."""

from collection.models import Category, CollectionRun, RunStatus
from collection.services import runs


def make_categories(n: int, *, items: int | None = None, platform: str = "demo") -> list[Category]:
    """`n` new categories `<platform>-<k>`, numbered from the next free k (demo-1, demo-2, … in an
    empty database), each holding `items` items (None: unknown)."""
    made: list[Category] = []
    number = Category.objects.filter(platform=platform).count()
    while len(made) < n:
        number += 1
        category, created = Category.objects.get_or_create(
            platform=platform, external_id=f"{platform}-{number}",
            defaults={"name": f"Category {number}", "known_item_count": items},
        )
        if created:
            made.append(category)
    return made


def make_run(*, categories: int | list[Category] = 2, items: int | None = 40, status: str = RunStatus.PENDING,
             source: str = "demo", **create) -> CollectionRun:
    """A run through the creation service (estimate, cap checks, one unit per category), over
    new categories (or the ones given), then put in `status` directly."""
    if isinstance(categories, int):
        categories = make_categories(categories, items=items, platform="demo" if source == "demo" else source)
    run = runs.run_create(source=source, category_ids=[c.pk for c in categories], **create)
    if status != RunStatus.PENDING:
        CollectionRun.objects.filter(pk=run.pk).update(status=status)
        run.status = status
    return run
