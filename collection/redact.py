"""Text that comes from outside (a provider's error message, a warning) is untrusted: before it
is stored in events, unit errors or run errors it is cut to a length and scrubbed of anything
that looks like a credential."""

from __future__ import annotations

import logging
import re

MAX_UNTRUSTED = 500
REDACTED = "[redacted]"

_PATTERNS = [
    # Authorization headers and schemes: "Authorization: Bearer abc", "Basic dXNlcjpwYXNz"
    re.compile(r"(?i)\b(authorization\s*[:=]\s*)(\S+(?:\s+\S+)?)"),
    re.compile(r"(?i)\b(bearer|basic|token)\s+([A-Za-z0-9._~+/=^#|-]{8,})"),
    # key=value pairs whose name says secret: api_key=…, access_token: …, client_secret=…
    re.compile(r"(?i)\b([\w-]*(?:key|token|secret|password|passwd|signature|credential)s?[\"']?\s*[:=]\s*[\"']?)"
               r"([^\s\"'&,;]+)"),
]
# Long opaque strings (tokens, keys) even without a name
_OPAQUE = re.compile(r"\b[A-Za-z0-9._~+/=^#|-]{32,}\b")


def untrusted_text(text: object, *, limit: int = MAX_UNTRUSTED) -> str:
    """`text` safe to store and show: credentials replaced by [redacted], at most `limit` characters."""
    value = str(text)
    for pattern in _PATTERNS:
        value = pattern.sub(lambda m: f"{m.group(1)}{REDACTED}" if m.lastindex == 2 else REDACTED, value)
    value = _OPAQUE.sub(REDACTED, value)
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs each record's message like untrusted_text (no length cut):
    a library logging a URL with `?key=…` or a header does not write the credential."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = untrusted_text(message, limit=max(len(message), 1))
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True
