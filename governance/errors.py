"""The one exception type of the governance package."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class GovernanceError(Exception):
    """A governance object is malformed, not authentic, or not allowed; ``field`` says where.

    ``field`` is a dotted path such as ``"approvals[1].signature"`` or ``"new_policy.version"``;
    ``reason`` says what is wrong; ``subject`` names the admin or approver concerned, if any, so
    a caller can tell who sent a bad signature without parsing the message.
    """

    def __init__(self, field: str, reason: str, *, subject: str | None = None) -> None:
        self.field = field
        self.reason = reason
        self.subject = subject
        super().__init__(f"{field}: {reason}")


@contextlib.contextmanager
def field_prefix(prefix: str) -> Iterator[None]:
    """Re-raise a :class:`GovernanceError` from the block with ``prefix.`` before its field."""
    try:
        yield
    except GovernanceError as e:
        raise GovernanceError(f"{prefix}.{e.field}", e.reason, subject=e.subject) from None
