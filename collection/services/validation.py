"""Input parsing shared by every entry point (API, admin, commands), so each bad value gets
the same clear error naming its field."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from collection.money import MAX_MONEY, MONEY_PLACES, money

MAX_CATEGORIES = 1000


def parse_money(value, *, field: str, errors: dict, allow_none: bool = False) -> Decimal | None:
    if value is None or value == "":
        if allow_none:
            return None
        errors[field] = ["This field is required."]
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal, float)):
        errors[field] = ["Must be a decimal number."]
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        errors[field] = ["Must be a decimal number."]
        return None
    if not amount.is_finite():
        errors[field] = ["Must be a finite decimal number."]
    elif amount < 0:
        errors[field] = ["Must not be negative."]
    elif amount > MAX_MONEY:
        errors[field] = [f"Must not exceed {MAX_MONEY}."]
    elif amount != money(amount):
        errors[field] = [f"At most {MONEY_PLACES} decimal places."]
    else:
        return amount
    return None


def parse_id_list(value, *, field: str, errors: dict, limit: int = MAX_CATEGORIES) -> list[int]:
    if not isinstance(value, (list, tuple)):
        errors[field] = ["Must be a list of ids."]
        return []
    if not value:
        errors[field] = ["Pick at least one."]
        return []
    if len(value) > limit:
        errors[field] = [f"At most {limit} per run."]
        return []
    ids = []
    for item in value:
        if isinstance(item, bool):
            errors[field] = [f"{item!r} is not a valid id."]
            return []
        try:
            number = int(item)
        except (TypeError, ValueError):
            errors[field] = [f"{item!r} is not a valid id."]
            return []
        if number <= 0 or number >= 2**63 or str(number) != str(item).strip():
            errors[field] = [f"{item!r} is not a valid id."]
            return []
        ids.append(number)
    if len(set(ids)) != len(ids):
        errors[field] = ["Each category may be picked once."]
        return []
    return ids
