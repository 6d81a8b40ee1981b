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


def seed_offers(run_id: int | None = None) -> list[str]:
    """Three Amazon-like products whose offers come from four sellers (each selling several of
    them; one in two conditions), stored through the checkpoint's upsert. Returns the ASINs."""
    from decimal import Decimal

    from collection.services.checkpoint import upsert_items
    from collection.sources import OfferItem, ProductItem, SellerItem

    category = make_categories(1)[0]
    sellers = [SellerItem(external_id=f"A{i}SELLER", name=f"Shop {i}", feedback_score=10 * i) for i in range(4)]
    items = [
        ProductItem(external_id=f"B00{n}", title=f"Product {n}", seller=None, price=Decimal("10.00"), currency="USD",
                    offers=tuple(OfferItem(seller=SellerItem(external_id=s.external_id), price=Decimal(10 + n + i),
                                           currency="USD", condition="NEW", fulfilled_by_platform=i % 2 == 0)
                                 for i, s in enumerate(sellers[n:])) + (
                        (OfferItem(seller=SellerItem(external_id="A3SELLER"), price=Decimal("5.00"), currency="USD",
                                   condition="USED_GOOD"),) if n == 0 else ()))
        for n in range(3)
    ]
    upsert_items(platform="amazon", items=items, run_id=run_id, category_id=category.pk, sellers=sellers)
    return [item.external_id for item in items]
