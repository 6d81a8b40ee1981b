"""Django Tasks entry points. A task is only a trigger — "advance unit U for a bounded time
slice"; the runs' own tables are the source of truth (see services/engine.py)."""

from django.tasks import task


@task()
def advance_unit(unit_id: int, token: str) -> dict:
    from collection.services.engine import unit_advance

    return unit_advance(unit_id=unit_id, token=token)
