"""The collection settings row: validated changes, applied to this month's ledger too."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from collection.models import CollectionSettings

from .budget import period_current
from .errors import InvalidInput
from .validation import parse_money


def settings_update(*, actor=None, **values) -> CollectionSettings:
    """Validate and save settings. A lower monthly cap applies to this month too, but never
    below what this month has already spent and reserved."""
    with transaction.atomic():
        current = CollectionSettings.load()
        obj = CollectionSettings.objects.select_for_update().get(pk=current.pk)
        unknown = set(values) - {f.name for f in obj._meta.fields if f.name not in ("id", "updated_at")}
        if unknown:
            raise InvalidInput({name: "Unknown setting." for name in sorted(unknown)})
        errors = {}
        for name in ("run_budget_cap", "monthly_budget_cap"):
            if name in values:
                values[name] = parse_money(values[name], field=name, errors=errors)
        if errors:
            raise InvalidInput(errors)
        for name, value in values.items():
            setattr(obj, name, value)
        try:
            obj.full_clean()
        except ValidationError as error:
            raise InvalidInput(error.message_dict) from None
        if "currency" in values:
            obj.currency = obj.currency.upper()
        if "monthly_budget_cap" in values:
            period = period_current(settings=obj)
            period = type(period).objects.select_for_update().get(pk=period.pk)
            floor = period.spent + period.reserved
            if obj.monthly_budget_cap < floor:
                raise InvalidInput({
                    "monthly_budget_cap": f"Must not be below what this month has spent and reserved ({floor})."
                })
            period.cap = obj.monthly_budget_cap
            period.save(update_fields=["cap"])
        obj.save()
    return obj
