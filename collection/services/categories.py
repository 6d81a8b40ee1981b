"""Categories from an operator's file: an eBay category tree (the Taxonomy API's
getCategoryTree JSON) or a flat list; and a parent category's leaves, which runs collect.

In eBay's tree (https://developer.ebay.com/api-docs/buy/taxonomy/types/txn:CategoryTree) the
root is level 0 and is not a category to collect; `categoryTreeNodeLevel` is a node's depth,
and `leafCategoryTreeNode` is "returned only if the value of this field is true".
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from collection.models import Category
from collection.redact import untrusted_text
from collection.sources import SourceError, UnknownSource

from .budget import budget_charge_month
from .errors import InvalidInput
from .source_state import source_for

MAX_LEAVES = 5000  # units one run may have


class CategoryFileError(ValueError):
    pass


@dataclass(frozen=True)
class CategoryRow:
    external_id: str
    name: str
    parent: str  # the parent's external id ("" for a top-level category)
    level: int | None
    is_leaf: bool
    item_count: int | None = None  # what the provider estimates the category holds (Keepa's productCount)


def _walk_tree(node: dict, parent: str, level: int, out: list) -> None:
    if not isinstance(node, dict):
        raise CategoryFileError(f"a tree node under {parent or 'the root'} is not an object")
    category = node.get("category") or {}
    cid, name = category.get("categoryId"), category.get("categoryName")
    if not cid or not name:
        raise CategoryFileError(f"a tree node has no categoryId/categoryName (under {parent or 'the root'})")
    children = node.get("childCategoryTreeNodes") or []
    if not isinstance(children, list):
        raise CategoryFileError(f"category {cid}: childCategoryTreeNodes must be a list")
    declared = node.get("categoryTreeNodeLevel")
    depth = declared if isinstance(declared, int) and declared >= 0 else level
    leaf = bool(node.get("leafCategoryTreeNode")) or not children
    out.append(CategoryRow(str(cid), str(name), parent, depth, leaf))
    for child in children:
        _walk_tree(child, str(cid), depth + 1, out)


def _keepa_rows(objects) -> list[CategoryRow]:
    """Keepa category objects (a /category or /search answer's `categories`, or a list of them):
    `catId`, `name`, `parent` (0: a root category), `children` (null or [] for a leaf) and
    `productCount` (an estimate) — keepacom/api_backend structs/Category.java."""
    rows = []
    for number, entry in enumerate(objects, start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("catId"), int) or not entry.get("name"):
            raise CategoryFileError(f"Keepa category {number} needs a numeric catId and a name")
        children, parent, count = entry.get("children"), entry.get("parent"), entry.get("productCount")
        if children is not None and not isinstance(children, list):
            raise CategoryFileError(f"category {entry['catId']}: children must be a list")
        rows.append(CategoryRow(
            str(entry["catId"]), str(entry["name"]), str(parent) if isinstance(parent, int) and parent > 0 else "",
            None, not children, count if isinstance(count, int) and count >= 0 else None,
        ))
    return rows


def parse_categories(data) -> list[CategoryRow]:
    """The categories of an eBay tree, Keepa category objects or a flat list of {id, name,
    parent?}; the eBay tree's root (level 0) is left out and its children are top-level."""
    rows: list[CategoryRow] = []
    if isinstance(data, dict) and isinstance(data.get("categories"), dict):
        rows = _keepa_rows(list(data["categories"].values()))
    elif isinstance(data, list) and data and isinstance(data[0], dict) and "catId" in data[0]:
        rows = _keepa_rows(data)
    elif isinstance(data, dict) and ("rootCategoryNode" in data or "categoryTreeNodes" in data):
        roots = [data["rootCategoryNode"]] if "rootCategoryNode" in data else data["categoryTreeNodes"]
        if not isinstance(roots, list):
            raise CategoryFileError("categoryTreeNodes must be a list")
        for root in roots:
            _walk_tree(root, "", 0, rows)
        root_ids = {row.external_id for row in rows if row.level == 0}
        rows = [
            CategoryRow(r.external_id, r.name, "" if r.parent in root_ids else r.parent, r.level, r.is_leaf)
            for r in rows if r.level != 0
        ]
    elif isinstance(data, list):
        for number, entry in enumerate(data, start=1):
            if not isinstance(entry, dict) or not entry.get("id") or not entry.get("name"):
                raise CategoryFileError(f"entry {number} needs an id and a name")
            rows.append(CategoryRow(str(entry["id"]), str(entry["name"]), str(entry.get("parent") or ""), None, True))
        parents = {row.parent for row in rows}
        rows = [CategoryRow(r.external_id, r.name, r.parent, r.level, r.external_id not in parents) for r in rows]
    else:
        raise CategoryFileError("expected an eBay category tree (rootCategoryNode), Keepa category objects "
                                "({\"categories\": {…}} or a list with catId) or a list of {id, name}")
    for row in rows:
        if len(row.external_id) > 128 or len(row.name) > 255:
            raise CategoryFileError(f"category {row.external_id[:40]!r}: id or name too long")
    return rows


def categories_load(*, platform: str, data) -> tuple[int, int]:
    """Create or update the file's categories; a file of the wrong shape writes nothing."""
    rows = parse_categories(data)
    created = updated = 0
    now = timezone.now()
    with transaction.atomic():
        for row in rows:
            defaults = {"name": row.name, "parent_external_id": row.parent, "level": row.level, "is_leaf": row.is_leaf}
            if row.item_count is not None:
                defaults.update(known_item_count=row.item_count, item_count_measured_at=now)
            _, was_created = Category.objects.update_or_create(
                platform=platform, external_id=row.external_id, defaults=defaults,
            )
            created += was_created
            updated += not was_created
    return created, updated


def category_add_by_id(*, source: str, external_id) -> Category:
    """Add (or refresh) the category the source knows by `external_id`: its name, parent, leaf
    or not and size as the provider describes them. The lookup is one call, charged to the
    month's budget like a size probe. Bad input, an unknown id or a failed call write nothing."""
    try:
        src = source_for(source)
    except UnknownSource as error:
        raise InvalidInput({"source": [str(error)]}) from None
    if not src.can_look_up_categories:
        raise InvalidInput({"source": [f"{src.label or src.key} cannot look up a category by id: load a category "
                                       "file instead (manage.py collection_load_categories)."]})
    missing = src.missing_configuration()
    if missing:
        raise InvalidInput({"source": [missing]})
    value = str(external_id or "").strip()
    if not value or len(value) > 128:
        raise InvalidInput({"external_id": ["Enter the category's id at the source (at most 128 characters)."]})
    if not budget_charge_month(amount=src.probe_cost()):
        raise InvalidInput({"external_id": ["This month's budget cannot pay for the lookup."]})
    try:
        info = src.look_up_category(value)
    except SourceError as error:
        raise InvalidInput({"external_id": [f"The lookup failed: {untrusted_text(error)}"]}) from None
    if info is None:
        raise InvalidInput({"external_id": [f"{src.label or src.key} does not know category {value!r}."]})
    defaults = {"name": info.name, "parent_external_id": info.parent, "is_leaf": info.is_leaf}
    if info.item_count is not None:
        defaults.update(known_item_count=info.item_count, item_count_measured_at=timezone.now())
    category, _ = Category.objects.update_or_create(platform=src.platform, external_id=info.external_id,
                                                    defaults=defaults)
    return category


def leaves_of(chosen: list[Category]) -> list[tuple[Category, Category | None]]:
    """The leaf categories a run over `chosen` collects, each with the chosen parent it came
    through (None for a leaf chosen itself), without duplicates, in the order chosen.
    Raises InvalidInput for a parent none of whose leaves is loaded: searching it would be
    refused (eBay's 409 for a top-level category) or would not be a category's listing."""
    result: dict[int, tuple[Category, Category | None]] = {}
    empty = []
    for category in chosen:
        if category.is_leaf:
            result.setdefault(category.pk, (category, None))
            continue
        found, frontier, visited = [], [category.external_id], {category.external_id}
        while frontier:  # breadth first; `visited` ends a walk through a parent cycle in the data
            children = list(Category.objects.filter(platform=category.platform, parent_external_id__in=frontier)
                            .exclude(external_id__in=visited).order_by("external_id"))
            visited.update(child.external_id for child in children)
            found += [child for child in children if child.is_leaf]
            frontier = [child.external_id for child in children if not child.is_leaf]
        if not found:
            empty.append(category)
        for leaf in found:
            result.setdefault(leaf.pk, (leaf, category))
        if len(result) > MAX_LEAVES:
            raise InvalidInput({"categories": f"These categories hold more than {MAX_LEAVES} leaf categories: "
                                              "choose fewer or narrower ones."})
    if empty:
        names = ", ".join(f"{c.name} ({c.pk})" for c in empty)
        raise InvalidInput({"categories": f"{names}: has subcategories but none of its leaf categories is loaded. "
                                          "Load the category tree (manage.py collection_load_categories) "
                                          "or choose leaf categories."})
    return list(result.values())
