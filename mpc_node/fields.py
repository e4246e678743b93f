"""Checks of the Node RPCs' request fields, run before any work: each raises
:class:`mpcnet.common.rpc.RpcError` INVALID_ARGUMENT naming the field (``dkg.key_label: ...``)
and quoting at most a short, escaped prefix of the caller's value.

The rules are the project's one definition in :mod:`governance.text` (caller text, quoting);
this module only binds them to RPC field names and adds the bounds of bytes and repeated fields.
"""

from __future__ import annotations

from collections.abc import Sized

from governance.encoding import MAX_ENCODED
from governance.errors import GovernanceError
from governance.text import check_text
from mpcnet.common.rpc import RpcError, invalid

MAX_ABORT_REASON = 500
"""Characters of AbortSession's free-text reason."""
MAX_GOVERNANCE_BYTES = MAX_ENCODED
"""Bytes of a canonical governance object in a request (bundle, change, attestation, receipt)."""


def text_field(value: str, field: str, max_chars: int) -> str:
    """``value`` if it is caller text (:func:`governance.text.check_text`: at most ``max_chars``
    characters, no control, format, separator, surrogate, private-use or unassigned character)."""
    try:
        return check_text(value, field, max_chars)
    except GovernanceError as e:
        raise _invalid(e) from None


def utf8_text_field(value: bytes, field: str, max_bytes: int) -> str:
    """``value`` (bytes on the wire) decoded as caller text: at most ``max_bytes`` bytes of UTF-8."""
    if len(value) > max_bytes:
        raise invalid(field, f"at most {max_bytes} bytes, got {len(value)}")
    try:
        decoded = bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise invalid(field, "must be UTF-8") from None
    return text_field(decoded, field, max_bytes)


def at_most(items: Sized, field: str, most: int, what: str = "") -> None:
    """A repeated field (or bytes) holds at most ``most`` items (bytes)."""
    if len(items) > most:
        unit = what or ("bytes" if isinstance(items, (bytes, bytearray)) else "items")
        raise invalid(field, f"at most {most} {unit}, got {len(items)}")


def governance_blob(value: bytes, field: str) -> bytes:
    """A canonical governance encoding: at most :data:`MAX_GOVERNANCE_BYTES` (decoded later)."""
    at_most(value, field, MAX_GOVERNANCE_BYTES)
    return bytes(value)


def _invalid(e: GovernanceError) -> RpcError:
    return invalid(e.field, e.reason)
