"""The database-backed state that sources share between worker processes (sources/base.py's
SharedState): one SourceState row per name, read-modify-written under its row lock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import transaction

from collection.models import SourceState
from collection.sources import BaseSource, SharedState, get_source


class DatabaseState(SharedState):
    def read(self, name: str) -> dict:
        return dict(SourceState.objects.filter(name=name).values_list("value", flat=True).first() or {})

    @contextmanager
    def update(self, name: str) -> Iterator[dict]:
        SourceState.objects.get_or_create(name=name)
        with transaction.atomic():
            row = SourceState.objects.select_for_update().get(name=name)
            value = dict(row.value)
            yield value
            if value != row.value:
                row.value = value
                row.save(update_fields=["value", "updated_at"])


def source_for(key: str) -> BaseSource:
    """The registered source `key` (raises UnknownSource), sharing its state through the database."""
    source = get_source(key)
    if not isinstance(source.state, DatabaseState):
        source.state = DatabaseState()
    return source
