"""The audit chain, pure: entries, their canonical encoding, hashing, signing and verification.

Each entry's hash covers its sequence number, timestamp, actor, action, request id, outcome,
details and the previous entry's hash; the component signs each entry hash with its Ed25519
identity key. Entries are numbered 1, 2, 3, ... without gaps. So an edited field, a deleted,
inserted or reordered entry, or a forged signature breaks the chain at a definite entry, which
:func:`verify_entries` reports (it trusts nothing in the rows but the component name and the
public key it is given).

**Genesis.** Entry 1's ``prev_hash`` is ``SHA-256(encode("MPCNET/v1/gov/audit-genesis",
component, public_key))``, not zeros: a log is bound to the component and key that started it,
so the beginning of another component's log cannot be passed off as this one's.

**Truncation.** Dropping the *last* entries leaves a valid, shorter chain; no chain can detect
that by itself. Publish the head (seq and hash of the last entry) somewhere the log's host
cannot rewrite, e.g. periodically to the coordinator or an operator, and pass it as
``expected_head``: the verifier then reports a log that ends before it, or that holds a
different entry at that seq.

**Key rotation.** A component may replace its signing key without starting a new log: it
appends an entry with action :data:`KEY_ROTATED_ACTION` (``audit-key-rotated``), signed by the
*current* key, whose details name the next key (``new_public_key``, 64 hex digits). That is the
one rule: every entry after it verifies with the named key, and only with it, so an entry signed
by the old key after the rotation breaks the chain, and no key ever takes over without an entry
signed by the key before it. The genesis hash stays bound to the key that started the log.

Details are small ``str -> str | int | bool`` maps and must never hold secrets (keys whose name
suggests one are refused as a tripwire).

An entry's *row* is its ten stored columns in :data:`ROW_COLUMNS` order (details as canonical
JSON text): the form the SQLite store keeps (:mod:`mpcnet.common.stores.audit`, which also holds
``AuditLog``, file verification and export) and the form entries travel in over the network.
This module does no I/O: no files, database, threads or clock.
"""

from __future__ import annotations

import hmac
import json
import re
import struct
import types
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import text
from ._checks import (
    SIGNATURE_LEN,
    check_bytes,
    check_int,
    check_name,
    check_private_key,
    check_public_key,
    ed25519_verify,
    raw_public_key,
)
from .encoding import I64_MAX, I64_MIN, Encoder, domain_tag, sha256
from .errors import GovernanceError

AUDIT_ENTRY_TAG = domain_tag("audit-entry")
AUDIT_DETAILS_TAG = domain_tag("audit-details")
AUDIT_GENESIS_TAG = domain_tag("audit-genesis")
AUDIT_SIGNATURE_TAG = domain_tag("audit-signature")

HASH_LEN = 32
MAX_DETAILS = 64
MAX_DETAIL_TEXT = 1024
MAX_TIME_MS = 2**63 - 1
KEY_ROTATED_ACTION = "audit-key-rotated"  # the entry that hands the log over to the next signing key
NEW_KEY_DETAIL = "new_public_key"  # its details key: the next key, raw Ed25519 as 64 lower-case hex digits
SUBJECT_KEY = "subject"  # the details key that AuditLog.append_rate_limited counts by
EVENT_KEY = "event"  # the details key that AuditLog.append_once deduplicates by

TOKEN_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # actions, outcomes and detail keys
_SECRET_HINTS = ("secret", "private", "passphrase", "password", "seed", "mnemonic")

DetailValue = str | int | bool

ROW_COLUMNS = (  # an entry's stored columns, in row order
    "seq", "timestamp_ms", "actor", "action", "request_id", "outcome", "details", "prev_hash", "entry_hash",
    "signature",
)


# --- entries ---------------------------------------------------------------------------------


def rotation_details(new_public_key: bytes) -> dict[str, DetailValue]:
    """The details of a :data:`KEY_ROTATED_ACTION` entry handing the log over to
    ``new_public_key`` (raw Ed25519, 32 bytes; checked)."""
    return {NEW_KEY_DETAIL: check_public_key(new_public_key, NEW_KEY_DETAIL).hex()}


def next_signing_key(entry: AuditEntry, key: bytes) -> bytes:
    """The key that verifies the entry after ``entry``, which verified with ``key``: the key its
    details name when ``entry`` is a :data:`KEY_ROTATED_ACTION` entry, else ``key``.

    :class:`GovernanceError` naming ``details.new_public_key`` when a rotation entry names no
    valid key or the key it already had.
    """
    if entry.action != KEY_ROTATED_ACTION:
        return key
    field = f"details.{NEW_KEY_DETAIL}"
    value = entry.details.get(NEW_KEY_DETAIL)
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise GovernanceError(field, "must be 64 lower-case hex digits (a raw Ed25519 public key)")
    new = check_public_key(bytes.fromhex(value), field)
    if hmac.compare_digest(new, key):
        raise GovernanceError(field, "names the key the log already had")
    return new


def check_token(value: object, field: str, *, allow_empty: bool = False) -> str:
    """``value`` if it is a token (:data:`TOKEN_RE`; ``""`` too with ``allow_empty``), else
    :class:`GovernanceError` naming ``field``."""
    if allow_empty and value == "":
        return ""
    if not isinstance(value, str) or not TOKEN_RE.fullmatch(value):
        raise GovernanceError(field, "must be 1-64 characters of [a-z0-9._-] starting with a letter or digit")
    return value


def check_request_id(value: object, field: str = "request_id") -> str:
    """``value`` if it is ``""`` or a request id (:func:`governance.text.check_request_id`, full
    match: the same alphabet as the coordinator's and the nodes')."""
    return text.check_request_id(value, field, allow_empty=True)


def detail_text(key: str, value: str, limit: int = MAX_DETAIL_TEXT) -> dict[str, DetailValue]:
    """``{key: value}`` for an entry's details, never cut silently: when ``value`` is longer than
    ``limit`` characters it holds the first ``limit`` of them and ``{key}_truncated: True`` is
    added. A NUL (which details may not hold) is written as ``\\x00``, so recording a refusal
    can never fail on the text that caused it."""
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    if len(value) <= limit:
        return {key: value}
    return {key: value[:limit], f"{key}_truncated": True}


def check_details(value: object, field: str = "details") -> Mapping[str, DetailValue]:
    """A read-only, key-sorted copy of ``value``: small, typed, and nothing named like a secret.

    Every item goes through :func:`_plain_item` (a predicate for the common case: a token key
    naming no secret, a plain ``bool``, an ``int`` in i64 or a short UTF-8 ``str`` without NUL);
    an item it does not pass is judged by :func:`_check_item`, the full check, which raises
    :class:`GovernanceError` naming ``field[key]`` (or accepts it, e.g. a subclass of ``str``).
    Issue 14: the error's field name is built only when there is an error."""
    if not isinstance(value, Mapping):
        raise GovernanceError(field, "must be a mapping of str to str, int or bool")
    if len(value) > MAX_DETAILS:
        raise GovernanceError(field, f"more than {MAX_DETAILS} items")
    out: dict[str, DetailValue] = {}
    try:  # the common case: every item plain (str keys, so the same order as the key function below)
        keys: list[Any] | None = sorted(value)
    except TypeError:
        keys = None
    if keys is not None:
        for key in keys:
            item = value[key]
            if not _plain_item(key, item):
                break  # judged below, in the full order, so the same item is named as before
            out[key] = item
        else:
            return types.MappingProxyType(out)
        out = {}
    for key in sorted(value, key=lambda k: k if isinstance(k, str) else ""):
        item = value[key]
        if not _plain_item(key, item):
            _check_item(key, item, field)
        out[key] = item
    return types.MappingProxyType(out)


_PLAIN_KEYS: set[str] = set()  # detail keys that passed _plain_key (a pure test of the string)
_PLAIN_KEYS_MAX = 4096  # bounded: a caller's keys never grow it without limit (cleared when full)


def _plain_key(key: str) -> bool:
    """Whether the str ``key`` is a token naming no secret; remembered once true (the set of
    keys a process uses is small and fixed), so the regex and the hint scan run once per key."""
    if key in _PLAIN_KEYS:
        return True
    if TOKEN_RE.fullmatch(key) is None:
        return False
    for hint in _SECRET_HINTS:
        if hint in key:
            return False
    if len(_PLAIN_KEYS) >= _PLAIN_KEYS_MAX:
        _PLAIN_KEYS.clear()
    _PLAIN_KEYS.add(key)
    return True


def _plain_item(key: object, item: object) -> bool:
    """Whether ``key: item`` certainly passes :func:`_check_item` (False: let it decide)."""
    if type(key) is not str or not _plain_key(key):
        return False
    if type(item) is bool:
        return True
    if type(item) is int:
        return I64_MIN <= item <= I64_MAX
    if type(item) is str:
        if len(item) > MAX_DETAIL_TEXT or "\x00" in item:
            return False
        return item.isascii() or _utf8(item)
    return False


def _utf8(item: str) -> bool:
    try:
        item.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_item(key: object, item: object, field: str) -> None:
    """The full check of one details item: :class:`GovernanceError` naming ``field[key]``."""
    key = check_token(key, f"{field}[{text.quote(key, 80)}]")
    if any(hint in key for hint in _SECRET_HINTS):
        raise GovernanceError(f"{field}[{text.quote(key, 80)}]", "audit details must never hold secrets")
    if isinstance(item, bool):
        pass
    elif isinstance(item, int):
        check_int(item, f"{field}[{text.quote(key, 80)}]", I64_MIN, I64_MAX)
    elif isinstance(item, str):
        if len(item) > MAX_DETAIL_TEXT or "\x00" in item:
            raise GovernanceError(f"{field}[{text.quote(key, 80)}]", f"must be at most {MAX_DETAIL_TEXT} characters, no NUL")
        if not _utf8(item):
            raise GovernanceError(f"{field}[{text.quote(key, 80)}]", "is not encodable as UTF-8")
    else:
        raise GovernanceError(f"{field}[{text.quote(key, 80)}]", "must be a str, int or bool")


def encode_details(details: Mapping[str, DetailValue]) -> bytes:
    """The canonical binary encoding of checked ``details`` (key-sorted; type-tagged values):
    ``Encoder(AUDIT_DETAILS_TAG).count(n)`` then per item its key (``text``), its type tag
    (``uint``: 1 text, 2 int, 3 bool) and its value (``text``, ``sint``, ``flag``).

    Issue 14: plain ``str``/``int``/``bool`` items are written straight into the same bytes
    (:func:`_encoded_item`); anything else goes through :class:`Encoder`, whose errors
    (:class:`GovernanceError` ``encoding``) it raises."""
    parts = [_DETAILS_HEAD, _U32.pack(len(details))]
    for key in sorted(details):
        item = details[key]
        fast = _encoded_item(key, item)
        if fast is None:
            return _encode_details_slow(details)
        parts.append(fast)
    return b"".join(parts)


_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_DETAILS_HEAD = Encoder(AUDIT_DETAILS_TAG).finish()
_TEXT_TAG = Encoder(AUDIT_DETAILS_TAG).uint(1).finish()[len(_DETAILS_HEAD):]  # the field uint(1)
_INT_TAG = Encoder(AUDIT_DETAILS_TAG).uint(2).finish()[len(_DETAILS_HEAD):] + _U64.pack(8)  # uint(2), sint's length
_BOOL = {
    value: Encoder(AUDIT_DETAILS_TAG).uint(3).flag(value).finish()[len(_DETAILS_HEAD):] for value in (False, True)
}


def _encoded_item(key: object, item: object) -> bytes | None:
    """One item's fields as :class:`Encoder` writes them, or None (not a plain item: ask it)."""
    if type(key) is not str:
        return None
    try:
        k = key.encode("utf-8")
    except UnicodeEncodeError:
        return None
    head = _U64.pack(len(k)) + k
    if type(item) is str:
        try:
            v = item.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return head + _TEXT_TAG + _U64.pack(len(v)) + v
    if type(item) is bool:
        return head + _BOOL[item]
    if type(item) is int and I64_MIN <= item <= I64_MAX:
        return head + _INT_TAG + _I64.pack(item)
    return None


def _encode_details_slow(details: Mapping[str, DetailValue]) -> bytes:
    enc = Encoder(AUDIT_DETAILS_TAG).count(len(details))
    for key in sorted(details):
        item = details[key]
        enc.text(key)
        if isinstance(item, bool):
            enc.uint(3).flag(item)
        elif isinstance(item, int):
            enc.uint(2).sint(item)
        else:
            enc.uint(1).text(item)
    return enc.finish()


def details_json(details: Mapping[str, DetailValue]) -> str:
    """The canonical JSON text of checked ``details``, as stored in the ``details`` column."""
    return json.dumps(dict(details), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(
    seq: int,
    timestamp_ms: int,
    actor: str,
    action: str,
    request_id: str,
    outcome: str,
    details: Mapping[str, DetailValue],
    prev_hash: bytes,
) -> bytes:
    """The 32-byte SHA-256 hash of an entry's fields and ``prev_hash`` (what the chain links)."""
    return sha256(
        Encoder(AUDIT_ENTRY_TAG)
        .uint(seq)
        .uint(timestamp_ms)
        .text(actor)
        .text(action)
        .text(request_id)
        .text(outcome)
        .raw(encode_details(details))
        .raw(prev_hash)
        .finish()
    )


def signed_message(entry_hash: bytes) -> bytes:
    """The bytes the component's Ed25519 key signs for the entry with hash ``entry_hash``."""
    return Encoder(AUDIT_SIGNATURE_TAG).raw(entry_hash).finish()


def genesis_hash(component: str, public_key: bytes) -> bytes:
    """The ``prev_hash`` of entry 1 of ``component``'s log signed by ``public_key``."""
    return sha256(Encoder(AUDIT_GENESIS_TAG).text(component).raw(public_key).finish())


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the log; ``details`` never holds secrets."""

    seq: int
    timestamp_ms: int
    actor: str
    action: str
    request_id: str
    outcome: str
    details: Mapping[str, DetailValue]
    prev_hash: bytes
    entry_hash: bytes
    signature: bytes

    def __hash__(self) -> int:
        return hash(self.entry_hash)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly: bytes as hex."""
        return {
            "seq": self.seq,
            "timestamp_ms": self.timestamp_ms,
            "actor": self.actor,
            "action": self.action,
            "request_id": self.request_id,
            "outcome": self.outcome,
            "details": dict(self.details),
            "prev_hash": self.prev_hash.hex(),
            "entry_hash": self.entry_hash.hex(),
            "signature": self.signature.hex(),
        }

    def to_row(self) -> tuple[int, int, str, str, str, str, str, bytes, bytes, bytes]:
        """The stored columns (:data:`ROW_COLUMNS` order; details as canonical JSON text)."""
        return (
            self.seq,
            self.timestamp_ms,
            self.actor,
            self.action,
            self.request_id,
            self.outcome,
            details_json(self.details),
            self.prev_hash,
            self.entry_hash,
            self.signature,
        )


def entry_from_row(row: tuple[object, ...]) -> AuditEntry:
    """Parse one stored row strictly (types, sizes, canonical details); no chain or signature check."""
    seq, ts, actor, action, request_id, outcome, details_text, prev, ehash, sig = row
    seq = check_int(seq, "seq", 1, MAX_TIME_MS)
    ts = check_int(ts, "timestamp_ms", 0, MAX_TIME_MS)
    actor = check_name(actor, "actor")
    action = check_token(action, "action")
    request_id = check_request_id(request_id)
    outcome = check_token(outcome, "outcome", allow_empty=True)
    if not isinstance(details_text, str):
        raise GovernanceError("details", "is not text")
    try:
        parsed = json.loads(details_text)
    except ValueError:
        raise GovernanceError("details", "is not valid JSON") from None
    details = check_details(parsed)
    if details_json(details) != details_text:
        raise GovernanceError("details", "is not canonical JSON")
    return AuditEntry(
        seq=seq,
        timestamp_ms=ts,
        actor=actor,
        action=action,
        request_id=request_id,
        outcome=outcome,
        details=details,
        prev_hash=check_bytes(prev, "prev_hash", length=HASH_LEN),
        entry_hash=check_bytes(ehash, "entry_hash", length=HASH_LEN),
        signature=check_bytes(sig, "signature", length=SIGNATURE_LEN),
    )


def recompute_hash(e: AuditEntry) -> bytes:
    """:func:`entry_hash` of ``e``'s fields (compare it with ``e.entry_hash``)."""
    return entry_hash(e.seq, e.timestamp_ms, e.actor, e.action, e.request_id, e.outcome, e.details, e.prev_hash)


def seal_entry(
    signing_key: Ed25519PrivateKey,
    seq: int,
    timestamp_ms: int,
    actor: str,
    action: str,
    request_id: str,
    outcome: str,
    details: Mapping[str, DetailValue],
    prev_hash: bytes,
) -> AuditEntry:
    """The entry ``seq`` linked to ``prev_hash``, hashed and signed with ``signing_key``.

    The fields must already be checked (:func:`check_entry_fields`); ``prev_hash`` is the
    previous entry's hash, or :func:`genesis_hash` for entry 1.
    """
    key = check_private_key(signing_key, "signing_key")
    ehash = entry_hash(seq, timestamp_ms, actor, action, request_id, outcome, details, prev_hash)
    signature = key.sign(signed_message(ehash))
    return AuditEntry(seq, timestamp_ms, actor, action, request_id, outcome, details, prev_hash, ehash, signature)


def entry_verifies(entry: AuditEntry, public_key: bytes) -> bool:
    """Whether ``entry``'s hash matches its fields and its signature verifies under ``public_key``
    (raw Ed25519, 32 bytes). Says nothing about its place in the chain (:func:`verify_entries`)."""
    return hmac.compare_digest(recompute_hash(entry), entry.entry_hash) and ed25519_verify(
        public_key, entry.signature, signed_message(entry.entry_hash)
    )


def public_key_of(signing_key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte Ed25519 public key of ``signing_key`` (checked), which verifies its log."""
    return raw_public_key(check_private_key(signing_key, "signing_key"))


def check_entry_fields(
    actor: str, action: str, request_id: str, outcome: str, details: Mapping[str, DetailValue] | None
) -> Mapping[str, DetailValue]:
    """Check what :meth:`mpcnet.common.stores.audit.AuditLog.append` would check, without a log: for
    callers that queue an entry (e.g. an outbox) and must not find out only later that it
    cannot be appended.
    Returns the checked, key-sorted details; :class:`GovernanceError` naming the field."""
    check_name(actor, "actor")
    check_token(action, "action")
    check_request_id(request_id)
    check_token(outcome, "outcome", allow_empty=True)
    return check_details({} if details is None else details)


# --- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditReport:
    """The outcome of :func:`verify_entries` (and of :func:`mpcnet.common.stores.audit.verify_audit`).

    ``entries`` is the number of entries in the log; ``first_broken`` the seq of the first
    entry that is missing, altered, misplaced or forged (``None`` if the chain is intact, or
    if the file itself is unusable: then ``reason`` says why).
    """

    ok: bool
    entries: int
    first_broken: int | None
    reason: str


def _check_row(row: tuple[object, ...], expected_seq: int, prev_hash: bytes, public_key: bytes) -> tuple[int, str] | None:
    seq = row[0]
    if isinstance(seq, int) and not isinstance(seq, bool) and seq > expected_seq:
        return expected_seq, f"entry {expected_seq} is missing (the next entry is {seq})"
    if seq != expected_seq:
        return expected_seq, f"entry {expected_seq} has seq {seq!r}"
    try:
        entry = entry_from_row(row)
    except GovernanceError as e:
        return expected_seq, f"malformed entry: {e}"
    if not hmac.compare_digest(recompute_hash(entry), entry.entry_hash):
        return expected_seq, "entry_hash does not match the entry's fields (edited or moved)"
    if not hmac.compare_digest(entry.prev_hash, prev_hash):
        what = "the genesis hash" if expected_seq == 1 else f"entry {expected_seq - 1}"
        return expected_seq, f"prev_hash does not link to {what} (entry deleted, inserted or reordered)"
    if not ed25519_verify(public_key, entry.signature, signed_message(entry.entry_hash)):
        return expected_seq, "signature does not verify (forged or inserted entry)"
    return None


def check_expected_head(expected_head: object) -> tuple[int, bytes] | None:
    """``expected_head`` checked: ``None`` or a ``(seq >= 1, 32-byte entry_hash)`` tuple."""
    if expected_head is None:
        return None
    if not isinstance(expected_head, tuple) or len(expected_head) != 2:
        raise GovernanceError("expected_head", "must be a (seq, entry_hash) tuple")
    return (
        check_int(expected_head[0], "expected_head.seq", 1, MAX_TIME_MS),
        check_bytes(expected_head[1], "expected_head.entry_hash", length=HASH_LEN),
    )


def verify_entries(
    component: str,
    public_key: bytes,
    rows: Iterable[tuple[object, ...]],
    *,
    expected_head: tuple[int, bytes] | None = None,
) -> AuditReport:
    """Re-verify a whole log given as rows: every entry hash, the chain from the genesis hash
    and every signature (``public_key`` is the key that started the log; key rotation entries
    hand it over, see the module docstring); report the first broken entry (e.g. for entries received over the
    network; :func:`mpcnet.common.stores.audit.verify_audit` reads them from a file).

    ``rows`` are the stored columns of every entry in order (:data:`ROW_COLUMNS`, as
    :meth:`mpcnet.common.stores.audit.AuditLog.raw_rows` returns them:
    seq, timestamp_ms, actor, action, request_id, outcome, details as canonical JSON text,
    prev_hash, entry_hash, signature); the chain must start at the genesis of ``component``
    under ``public_key``. Whoever relayed the rows cannot make a forged, altered, dropped,
    inserted or reordered entry pass; dropping entries at the *end* is only caught with
    ``expected_head`` (a ``(seq, entry_hash)`` published earlier). Raises
    :class:`GovernanceError` only for bad arguments.
    """
    check_name(component, "component")
    key = check_public_key(public_key, "public_key")
    head = check_expected_head(expected_head)
    materialized = []
    for i, r in enumerate(rows):
        if not isinstance(r, (tuple, list)) or len(r) != len(ROW_COLUMNS):
            raise GovernanceError(f"rows[{i}]", f"must be a sequence of the {len(ROW_COLUMNS)} stored columns")
        materialized.append(tuple(r))
    return verify_row_stream(component, key, iter(materialized), len(materialized), head)


def verify_row_stream(
    component: str, key: bytes, rows: Iterator[tuple[object, ...]], total: int, head: tuple[int, bytes] | None
) -> AuditReport:
    """:func:`verify_entries` over rows read one at a time (e.g. from a database cursor).

    ``key`` and ``head`` must already be checked (:func:`governance._checks.check_public_key`,
    :func:`check_expected_head`); ``total`` is the number of rows, for the report. The rows
    themselves are untrusted: any malformed row is reported as the first broken entry.
    """
    prev = genesis_hash(component, key)
    expected = 1
    head_hash: bytes | None = None
    for row in rows:
        problem = _check_row(row, expected, prev, key)
        if problem is not None:
            return AuditReport(False, total, problem[0], problem[1])
        prev = bytes(row[8])  # type: ignore[call-overload]  # checked by _check_row
        if row[3] == KEY_ROTATED_ACTION:  # the one rule: from the next entry on, only the named key
            try:
                key = next_signing_key(entry_from_row(row), key)
            except GovernanceError as e:
                return AuditReport(False, total, expected, f"malformed key rotation: {e}")
        if head is not None and expected == head[0]:
            head_hash = prev
        expected += 1
    if head is not None:
        if head_hash is None:
            return AuditReport(
                False, total, expected, f"truncated: the log ends at entry {expected - 1}, the published head is entry {head[0]}"
            )
        if not hmac.compare_digest(head_hash, head[1]):
            return AuditReport(False, total, head[0], f"entry {head[0]} differs from the published head (log rewritten)")
    return AuditReport(True, total, None, "")


__all__ = [
    "KEY_ROTATED_ACTION",
    "NEW_KEY_DETAIL",
    "ROW_COLUMNS",
    "AuditEntry",
    "AuditReport",
    "check_details",
    "check_entry_fields",
    "check_expected_head",
    "check_request_id",
    "check_token",
    "detail_text",
    "details_json",
    "encode_details",
    "entry_from_row",
    "entry_hash",
    "entry_verifies",
    "genesis_hash",
    "next_signing_key",
    "public_key_of",
    "recompute_hash",
    "rotation_details",
    "seal_entry",
    "signed_message",
    "verify_entries",
    "verify_row_stream",
]
