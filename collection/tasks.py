"""Django Tasks entry points. The engine defines its task beside the function it runs
(`collection.services.engine.advance_unit`); this name stays importable for tasks that were
queued under it by an earlier version."""

from collection.services.engine import advance_unit

__all__ = ["advance_unit"]
