"""Typed errors raised by the protocol state machines."""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class of every error raised by :mod:`crypto_core`."""


class ProtocolAbort(ProtocolError):
    """The protocol cannot continue.

    ``party`` names the party at fault (``None`` when the failure cannot be attributed, for
    example a combined signature that does not verify). ``ban`` is set when the fault is one of
    the checks after which the honest party must refuse every later session with ``party``
    (OT-extension check, RVOLE check, Gamma checks; DKLs23 notes section 8).
    """

    def __init__(self, party: int | None, reason: str, *, ban: bool = False) -> None:
        self.party = party
        self.reason = reason
        self.ban = ban
        who = "unattributable" if party is None else f"party {party}"
        super().__init__(f"protocol aborted ({who}{', ban' if ban else ''}): {reason}")


class DecodeError(ProtocolError):
    """Bytes that do not decode to the expected structure. ``field`` names what was wrong."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class UsageError(ProtocolError, ValueError):
    """The local caller misused the API (wrong arguments, wrong order of calls)."""


class PresignatureUsed(UsageError):
    """A presignature was already consumed; using it again would leak the key."""


class RecoveryError(ProtocolError):
    """A backed-up share cannot be reconstructed from the officers' pieces.

    ``officers`` names the officers (1-based officer indices, ascending) whose piece did not
    match the Feldman commitments; it may be empty when too few pieces arrived at all.
    ``reason`` says what happened, never a scalar.
    """

    def __init__(self, officers: tuple[int, ...], reason: str) -> None:
        self.officers = tuple(officers)
        self.reason = reason
        who = "no officer at fault" if not self.officers else "officers at fault: " + ", ".join(map(str, self.officers))
        super().__init__(f"recovery failed ({who}): {reason}")


class ShareInvalid(ProtocolAbort):
    """A FROST signature share that does not verify (identifiable abort, RFC 9591 section 5.4).

    ``party`` is the signer's identifier (share index); ``reason`` says what was wrong, never a scalar.
    """

    def __init__(self, party: int, reason: str) -> None:
        super().__init__(party, reason)
