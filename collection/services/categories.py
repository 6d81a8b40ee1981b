"""Categories from an operator's file: an eBay category tree or a flat list."""

from __future__ import annotations

from django.db import transaction

from collection.models import Category


class CategoryFileError(ValueError):
    pass


def _walk_tree(node: dict, parent: str, out: list) -> None:
    category = node.get("category") or {}
    cid, name = category.get("categoryId"), category.get("categoryName")
    if not cid or not name:
        raise CategoryFileError(f"a tree node has no categoryId/categoryName (under {parent or 'the root'})")
    out.append((str(cid), str(name), parent))
    for child in node.get("childCategoryTreeNodes") or []:
        _walk_tree(child, str(cid), out)


def parse_categories(data) -> list[tuple[str, str, str]]:
    """[(external id, name, parent external id)] from a tree or a flat list; the tree's root
    (category id 0) is left out."""
    rows: list[tuple[str, str, str]] = []
    if isinstance(data, dict) and ("rootCategoryNode" in data or "categoryTreeNodes" in data):
        roots = [data["rootCategoryNode"]] if "rootCategoryNode" in data else data["categoryTreeNodes"]
        for root in roots:
            _walk_tree(root, "", rows)
        rows = [(cid, name, "" if parent == "0" else parent) for cid, name, parent in rows if cid != "0"]
    elif isinstance(data, list):
        for number, entry in enumerate(data, start=1):
            if not isinstance(entry, dict) or not entry.get("id") or not entry.get("name"):
                raise CategoryFileError(f"entry {number} needs an id and a name")
            rows.append((str(entry["id"]), str(entry["name"]), str(entry.get("parent", ""))))
    else:
        raise CategoryFileError("expected an eBay category tree or a list of {id, name}")
    for cid, name, _ in rows:
        if len(cid) > 128 or len(name) > 255:
            raise CategoryFileError(f"category {cid[:40]!r}: id or name too long")
    return rows


def categories_load(*, platform: str, data) -> tuple[int, int]:
    rows = parse_categories(data)
    created = updated = 0
    with transaction.atomic():
        for cid, name, parent in rows:
            _, was_created = Category.objects.update_or_create(
                platform=platform, external_id=cid, defaults={"name": name, "parent_external_id": parent}
            )
            created += was_created
            updated += not was_created
    return created, updated
