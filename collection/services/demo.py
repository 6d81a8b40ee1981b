"""Demo data: the categories the offline demo source serves."""

from django.db import transaction

from collection.models import Category

DEMO_NAMES = [
    "Vintage cameras", "Mechanical keyboards", "Board games", "Fountain pens", "Vinyl records",
    "Road bikes", "Espresso machines", "Trading cards", "Hiking boots", "Watches",
]


def demo_categories_load(*, count: int, items: int | None = None) -> tuple[int, int]:
    """Create (or update) demo categories demo-1 … demo-N. Returns (created, updated)."""
    created = updated = 0
    with transaction.atomic():
        for n in range(1, count + 1):
            name = DEMO_NAMES[(n - 1) % len(DEMO_NAMES)]
            if n > len(DEMO_NAMES):
                name = f"{name} {n // len(DEMO_NAMES) + 1}"
            defaults = {"name": name}
            if items is not None:
                defaults["known_item_count"] = items
            _, was_created = Category.objects.update_or_create(
                platform="demo", external_id=f"demo-{n}", defaults=defaults
            )
            created += was_created
            updated += not was_created
    return created, updated
