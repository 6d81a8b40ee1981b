"""Typed domain errors. Each carries what a caller needs to explain it; the API maps them to
HTTP in one exception handler, commands to exit codes, the admin to messages."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo


class CollectionError(Exception):
    code = "collection_error"


class InvalidInput(CollectionError):
    """Bad input, by field: {"field": ["message", ...]}. Nothing was written."""

    code = "invalid"

    def __init__(self, errors: dict[str, list[str] | str]):
        self.errors = {k: [v] if isinstance(v, str) else list(v) for k, v in errors.items()}
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in self.errors.items()))


class BudgetExceeded(CollectionError):
    """The estimate (at creation) or a page's reservation (at runtime) does not fit a cap."""

    code = "budget_exceeded"

    def __init__(self, reason: str, *, estimate: dict | None = None, scope: str = "run",
                 needed: Decimal | None = None):
        super().__init__(reason)
        self.reason = reason
        self.estimate = estimate
        self.scope = scope  # "run" or "month"
        self.needed = needed


class InvalidTransition(CollectionError):
    code = "invalid_transition"

    def __init__(self, *, action: str, status: str):
        super().__init__(f"cannot {action} a {status} run")
        self.action = action
        self.status = status


class LeaseLost(CollectionError):
    """The worker no longer holds the unit's lease (recovery gave the unit to another worker):
    it must not reserve, spend or record anything for it."""

    code = "lease_lost"


class QuotaNotReset(InvalidTransition):
    """Resuming a run paused for quota before the provider's quota day has turned over."""

    code = "quota_not_reset"

    def __init__(self, *, resets_at: datetime, timezone_name: str):
        when = f"{resets_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        if timezone_name != "UTC":
            when = f"{resets_at.astimezone(ZoneInfo(timezone_name)):%Y-%m-%d %H:%M %Z} ({when})"
        CollectionError.__init__(self, f"cannot resume before the source's call quota resets at {when}")
        self.action, self.status = "resume", "paused"
        self.resets_at = resets_at


class RunNotFound(CollectionError):
    code = "not_found"

    def __init__(self, run_id):
        super().__init__(f"run {run_id} does not exist")
        self.run_id = run_id
