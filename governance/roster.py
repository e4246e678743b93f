"""The node roster: which share-holder nodes exist, their public keys and endpoints, as an
admin-governed object (issue 11 items 3 and 4; spec/governance-v1.md sections 5.13-5.16).

Modelled on :mod:`governance.policy`: a :class:`Roster` only changes through a
:class:`RosterChange` signed by at least ``quorum`` distinct admins of the cluster's
:class:`~governance.policy.AdminSet` (the same :class:`~governance.policy.AdminSignature` and
quorum rule as policy changes). A change names the governance root it was made for, the
digest of the roster it replaces and the next version, so the roster's history is one chain
that cannot be forked, replayed or moved to another cluster.

A :class:`RosterEntry` is one node: its index (1..255, the Shamir x-coordinate; never reused),
name, Ed25519 identity key, X25519 encryption key, the SHA-256 fingerprint of its TLS
certificate, its ``host:port`` endpoint, a status (active or revoked) and a ``key_version``
that counts its key rotations. The operations a change may express (checked by
:func:`verify_roster_change` against the previous roster) are: add a node (a new index, active,
``key_version`` 1), revoke a node (the entry stays, revoked, with the same keys, so they stay
refused and the index is never reused; revocation is final), rotate a node's keys (same index
and name, ``key_version`` + 1, at least one of identity/encryption/TLS key changed) and change
an endpoint. Any change of keys or status must advance ``epoch`` (the key-lifecycle epoch at
whose boundary nodes switch); an endpoint-only change may keep it.

Pure: no I/O. Every failure is a :class:`~governance.errors.GovernanceError` naming the field.
"""

from __future__ import annotations

import enum
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._checks import (
    PUBLIC_KEY_LEN,
    check_bytes,
    check_int,
    check_name,
    check_private_key,
    check_public_key,
    expect_dict,
    from_hex,
    join,
    json_int,
)
from .encoding import Decoder, Encoder, domain_tag, sha256
from .errors import GovernanceError, field_prefix
from .policy import (
    DIGEST_LEN,
    MAX_VERSION,
    AdminSet,
    AdminSignature,
    admin_signatures_from_list,
    admin_signatures_to_list,
    check_admin_signature_list,
    check_canonical,
    decode_signed_change,
    encode_signed_change,
    require_admin_quorum,
)
from .text import quote

ROSTER_ENTRY_TAG = domain_tag("roster-entry")
ROSTER_TAG = domain_tag("roster")
ROSTER_CHANGE_TAG = domain_tag("roster-change")
SIGNED_ROSTER_CHANGE_TAG = domain_tag("signed-roster-change")
ROTATION_PROOF_TAG = domain_tag("node-key-rotation")

MAX_INDEX = 255
MAX_ENTRIES = MAX_INDEX
MAX_EPOCH = 2**63 - 1
MAX_KEY_VERSION = 2**63 - 1
FINGERPRINT_LEN = 32
X25519_KEY_LEN = 32
MAX_ENDPOINT_CHARS = 255

ENDPOINT_RE = re.compile(r"[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}")
"""``host:port`` as ``mpcnet.common.config`` accepts it (ASCII; ``[0-9]``, not ``\\d``), always
with ``fullmatch``; the port must also be in 1..65535."""

# X25519 (RFC 7748) low-order points, by u-coordinate: u = 0 (order 2; the all-zero key),
# u = 1 and u = p-1 (order 4, on the curve and its twist) and the two order-8 points (the
# libsodium/Bernstein blocklist). With any of them, every shared secret is the all-zero string;
# tests/governance/test_roster.py checks each one against X25519 itself.
_P25519 = 2**255 - 19
_X25519_LOW_ORDER = frozenset({
    0,
    1,
    _P25519 - 1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
})


def check_x25519_public_key(value: object, field: str) -> bytes:
    """A raw 32-byte X25519 public key (RFC 7748 section 5, little-endian u-coordinate).

    Refused: not 32 bytes; a non-canonical encoding (bit 255 set, or u >= 2^255-19); a
    low-order point (u in {0, 1, p-1} or one of the two order-8 points; all-zero is u = 0),
    with which any Diffie-Hellman gives a shared secret an attacker knows.
    """
    key = check_bytes(value, field, length=X25519_KEY_LEN)
    u = int.from_bytes(key, "little")
    if u >> 255 or u >= _P25519:
        raise GovernanceError(field, "is not a canonical X25519 public key (bit 255 set or u >= 2^255-19)")
    if u in _X25519_LOW_ORDER:
        raise GovernanceError(field, "is a low-order X25519 point (the shared secret would be predictable)")
    return key


def check_endpoint(value: object, field: str = "endpoint") -> str:
    """``host:port``: :data:`ENDPOINT_RE` (full match), at most 255 characters, port 1..65535."""
    if not isinstance(value, str) or len(value) > MAX_ENDPOINT_CHARS or not ENDPOINT_RE.fullmatch(value):
        raise GovernanceError(field, f"must be HOST:PORT (ASCII [A-Za-z0-9.-[]:], at most {MAX_ENDPOINT_CHARS}), got {quote(value)}")
    port = int(value.rsplit(":", 1)[1])
    if not 1 <= port <= 65535:
        raise GovernanceError(field, f"port must be in 1..65535, got {port}")
    return value


def check_fingerprint(value: object, field: str) -> bytes:
    """A SHA-256 certificate fingerprint: 32 bytes, not all zero."""
    fp = check_bytes(value, field, length=FINGERPRINT_LEN)
    if not any(fp):
        raise GovernanceError(field, "must not be all zero")
    return fp


class NodeStatus(enum.IntEnum):
    """A roster entry's status; encoded as a ``uint``."""

    ACTIVE = 1
    REVOKED = 2


def _check_status(value: object, field: str = "status") -> NodeStatus:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GovernanceError(field, "must be a NodeStatus")
    try:
        return NodeStatus(value)
    except ValueError:
        raise GovernanceError(field, f"must be 1 (active) or 2 (revoked), got {value}") from None


# --- entries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RosterEntry:
    """One share-holder node.

    ``index`` 1..255 (the node's Shamir x-coordinate and roster index); ``name``
    (:data:`governance.text.NAME_RE`); ``identity_key`` raw Ed25519 (32 bytes, not small-order);
    ``encryption_key`` raw X25519 (32 bytes, canonical, not low-order); ``tls_fingerprint``
    SHA-256 of the DER certificate (32 bytes, not all zero); ``endpoint`` ``host:port``;
    ``status``; ``key_version`` >= 1, bumped by each key rotation.
    """

    index: int
    name: str
    identity_key: bytes
    encryption_key: bytes
    tls_fingerprint: bytes
    endpoint: str
    status: NodeStatus = NodeStatus.ACTIVE
    key_version: int = 1

    def __post_init__(self) -> None:
        check_int(self.index, "index", 1, MAX_INDEX)
        check_name(self.name, "name")
        object.__setattr__(self, "identity_key", check_public_key(self.identity_key, "identity_key"))
        object.__setattr__(self, "encryption_key", check_x25519_public_key(self.encryption_key, "encryption_key"))
        object.__setattr__(self, "tls_fingerprint", check_fingerprint(self.tls_fingerprint, "tls_fingerprint"))
        check_endpoint(self.endpoint)
        object.__setattr__(self, "status", _check_status(self.status))
        check_int(self.key_version, "key_version", 1, MAX_KEY_VERSION)

    @property
    def active(self) -> bool:
        return self.status is NodeStatus.ACTIVE

    def keys(self) -> tuple[bytes, bytes, bytes]:
        """(identity_key, encryption_key, tls_fingerprint)."""
        return (self.identity_key, self.encryption_key, self.tls_fingerprint)

    def encode(self) -> bytes:
        return (
            Encoder(ROSTER_ENTRY_TAG)
            .uint(self.index)
            .text(self.name)
            .raw(self.identity_key)
            .raw(self.encryption_key)
            .raw(self.tls_fingerprint)
            .text(self.endpoint)
            .uint(int(self.status))
            .uint(self.key_version)
            .finish()
        )

    def to_bytes(self) -> bytes:
        return self.encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> RosterEntry:
        dec = Decoder(data, ROSTER_ENTRY_TAG)
        index = dec.uint("index")
        name = dec.text("name")
        identity = dec.raw("identity_key", length=PUBLIC_KEY_LEN)
        encryption = dec.raw("encryption_key", length=X25519_KEY_LEN)
        fingerprint = dec.raw("tls_fingerprint", length=FINGERPRINT_LEN)
        endpoint = dec.text("endpoint")
        status = _check_status(dec.uint("status"))
        key_version = dec.uint("key_version")
        dec.finish()
        out = cls(index, name, identity, encryption, fingerprint, endpoint, status, key_version)
        check_canonical(out.encode(), data)
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "name": self.name,
            "identity_key": self.identity_key.hex(),
            "encryption_key": self.encryption_key.hex(),
            "tls_fingerprint": self.tls_fingerprint.hex(),
            "endpoint": self.endpoint,
            "status": self.status.name.lower(),
            "key_version": self.key_version,
        }

    @classmethod
    def from_dict(cls, data: object) -> RosterEntry:
        keys = frozenset({"index", "name", "identity_key", "encryption_key", "tls_fingerprint", "endpoint", "status", "key_version"})
        d = expect_dict(data, "", keys)
        status = d["status"]
        if status not in ("active", "revoked"):
            raise GovernanceError("status", f"must be 'active' or 'revoked', got {quote(status)}")
        return cls(
            index=json_int(d["index"], "index"),
            name=check_name(d["name"], "name"),
            identity_key=from_hex(d["identity_key"], "identity_key", length=PUBLIC_KEY_LEN),
            encryption_key=from_hex(d["encryption_key"], "encryption_key", length=X25519_KEY_LEN),
            tls_fingerprint=from_hex(d["tls_fingerprint"], "tls_fingerprint", length=FINGERPRINT_LEN),
            endpoint=check_endpoint(d["endpoint"]),
            status=NodeStatus.ACTIVE if status == "active" else NodeStatus.REVOKED,
            key_version=json_int(d["key_version"], "key_version"),
        )


# --- roster ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Roster:
    """Every node the cluster has ever enrolled (revoked ones included), sorted by index.

    ``version`` 1..2^63-1 (bumped by one per change); ``epoch`` 0..2^63-1 (the key-lifecycle
    epoch this roster applies from); ``entries`` 1..255 :class:`RosterEntry`, given in any order
    and stored sorted by index. Indices, names, identity keys, encryption keys and TLS
    fingerprints must each be pairwise distinct (over revoked entries too), and no key value may
    appear in two roles (an identity key equal to another node's fingerprint, ...).
    """

    version: int
    epoch: int
    entries: tuple[RosterEntry, ...]

    def __post_init__(self) -> None:
        check_int(self.version, "version", 1, MAX_VERSION)
        check_int(self.epoch, "epoch", 0, MAX_EPOCH)
        if not isinstance(self.entries, (tuple, list)) or not 1 <= len(self.entries) <= MAX_ENTRIES:
            raise GovernanceError("entries", f"must be a sequence of 1..{MAX_ENTRIES} RosterEntry")
        for i, e in enumerate(self.entries):
            if not isinstance(e, RosterEntry):
                raise GovernanceError(f"entries[{i}]", "must be a RosterEntry")
        entries = tuple(sorted(self.entries, key=lambda e: e.index))
        seen_index: set[int] = set()
        seen_name: set[str] = set()
        seen_key: dict[bytes, str] = {}
        for i, e in enumerate(entries):
            field = f"entries[{i}]"
            if e.index in seen_index:
                raise GovernanceError(join(field, "index"), f"index {e.index} appears twice")
            seen_index.add(e.index)
            if e.name in seen_name:
                raise GovernanceError(join(field, "name"), f"name {e.name!r} appears twice", subject=e.name)
            seen_name.add(e.name)
            for what, key in zip(("identity_key", "encryption_key", "tls_fingerprint"), e.keys(), strict=True):
                if key in seen_key:
                    raise GovernanceError(join(field, what), f"same value as {seen_key[key]}", subject=e.name)
                seen_key[key] = f"node {e.index} {what}"
        object.__setattr__(self, "entries", entries)

    def __hash__(self) -> int:
        return hash(self.encode())

    def entry(self, index: int) -> RosterEntry | None:
        """The entry of ``index`` (active or revoked), or None."""
        for e in self.entries:
            if e.index == index:
                return e
        return None

    def encode(self) -> bytes:
        enc = Encoder(ROSTER_TAG).uint(self.version).uint(self.epoch).count(len(self.entries))
        for e in self.entries:
            enc.raw(e.encode())
        return enc.finish()

    def digest(self) -> bytes:
        """SHA-256 of the canonical encoding; what the next :class:`RosterChange` names."""
        return sha256(self.encode())

    def to_bytes(self) -> bytes:
        return self.encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Roster:
        dec = Decoder(data, ROSTER_TAG)
        version = dec.uint("version")
        epoch = dec.uint("epoch")
        raw_entries = [dec.raw(f"entries[{i}]") for i in range(dec.count("entries", max_count=MAX_ENTRIES))]
        dec.finish()
        entries: list[RosterEntry] = []
        for i, b in enumerate(raw_entries):
            with field_prefix(f"entries[{i}]"):
                e = RosterEntry.from_bytes(b)
            if entries and not e.index > entries[-1].index:
                raise GovernanceError(f"entries[{i}].index", "not in canonical (increasing, unique) order")
            entries.append(e)
        out = cls(version, epoch, tuple(entries))
        check_canonical(out.encode(), data)
        return out

    def to_dict(self) -> dict[str, object]:
        return {"version": self.version, "epoch": self.epoch, "entries": [e.to_dict() for e in self.entries]}

    @classmethod
    def from_dict(cls, data: object) -> Roster:
        d = expect_dict(data, "", frozenset({"version", "epoch", "entries"}))
        items = d["entries"]
        if not isinstance(items, list) or len(items) > MAX_ENTRIES:
            raise GovernanceError("entries", f"must be a list of at most {MAX_ENTRIES} objects")
        entries: list[RosterEntry] = []
        for i, item in enumerate(items):
            with field_prefix(f"entries[{i}]"):
                entries.append(RosterEntry.from_dict(item))
        return cls(json_int(d["version"], "version"), json_int(d["epoch"], "epoch"), tuple(entries))


def active_entries(roster: Roster) -> tuple[RosterEntry, ...]:
    """The active entries of ``roster``, by index."""
    return tuple(e for e in roster.entries if e.active)


def is_revoked_identity(roster: Roster, key: bytes) -> bool:
    """True iff ``key`` (32 bytes) is the identity key of a revoked entry (constant-time compare)."""
    key = check_bytes(key, "key", length=PUBLIC_KEY_LEN)
    return any(not e.active and hmac.compare_digest(e.identity_key, key) for e in roster.entries)


def active_entry_by_identity(roster: Roster, key: bytes) -> RosterEntry | None:
    """The active entry whose identity key is ``key``, or None (revoked, rotated away, unknown)."""
    key = check_bytes(key, "key", length=PUBLIC_KEY_LEN)
    for e in roster.entries:
        if e.active and hmac.compare_digest(e.identity_key, key):
            return e
    return None


def active_entry_by_fingerprint(roster: Roster, fingerprint: bytes) -> RosterEntry | None:
    """The active entry whose TLS certificate fingerprint is ``fingerprint``, or None."""
    fingerprint = check_bytes(fingerprint, "fingerprint", length=FINGERPRINT_LEN)
    for e in roster.entries:
        if e.active and hmac.compare_digest(e.tls_fingerprint, fingerprint):
            return e
    return None


# --- building the next roster ----------------------------------------------------------------


def _next(roster: Roster, entries: list[RosterEntry], epoch: int | None, *, bump: bool) -> Roster:
    new_epoch = roster.epoch + (1 if bump else 0) if epoch is None else epoch
    return Roster(roster.version + 1, new_epoch, tuple(entries))


def _require(roster: Roster, index: int) -> RosterEntry:
    e = roster.entry(index)
    if e is None:
        raise GovernanceError("index", f"no node {index} in the roster")
    if not e.active:
        raise GovernanceError("index", f"node {index} is revoked")
    return e


def add_node(roster: Roster, entry: RosterEntry, *, epoch: int | None = None) -> Roster:
    """The next roster with ``entry`` (active, ``key_version`` 1, a never-used index) added;
    ``epoch`` defaults to ``roster.epoch + 1``."""
    if not isinstance(entry, RosterEntry):
        raise GovernanceError("entry", "must be a RosterEntry")
    if roster.entry(entry.index) is not None:
        raise GovernanceError("entry.index", f"index {entry.index} is already in the roster (indices are never reused)")
    return _next(roster, [*roster.entries, entry], epoch, bump=True)


def revoke_node(roster: Roster, index: int, *, epoch: int | None = None) -> Roster:
    """The next roster with node ``index`` revoked (its entry kept)."""
    e = _require(roster, index)
    entries = [replace(x, status=NodeStatus.REVOKED) if x is e else x for x in roster.entries]
    return _next(roster, entries, epoch, bump=True)


def rotate_keys(
    roster: Roster,
    index: int,
    *,
    identity_key: bytes | None = None,
    encryption_key: bytes | None = None,
    tls_fingerprint: bytes | None = None,
    epoch: int | None = None,
) -> Roster:
    """The next roster with node ``index``'s given keys replaced and its ``key_version`` bumped."""
    e = _require(roster, index)
    new = replace(
        e,
        identity_key=e.identity_key if identity_key is None else identity_key,
        encryption_key=e.encryption_key if encryption_key is None else encryption_key,
        tls_fingerprint=e.tls_fingerprint if tls_fingerprint is None else tls_fingerprint,
        key_version=e.key_version + 1,
    )
    if new.keys() == e.keys():
        raise GovernanceError("keys", "a rotation must change at least one key")
    return _next(roster, [new if x is e else x for x in roster.entries], epoch, bump=True)


def change_endpoint(roster: Roster, index: int, endpoint: str, *, epoch: int | None = None) -> Roster:
    """The next roster with node ``index`` at ``endpoint`` (epoch unchanged by default)."""
    e = _require(roster, index)
    new = replace(e, endpoint=endpoint)
    return _next(roster, [new if x is e else x for x in roster.entries], epoch, bump=False)


# --- changes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RosterChange:
    """Replace the roster by ``new_roster``: the next link of the roster's chain.

    ``previous_digest`` is :meth:`Roster.digest` of the roster replaced (``None`` for the first
    roster); ``governance_root`` the :meth:`AdminSet.digest` of the cluster. Admins sign
    :meth:`encode`.
    """

    new_roster: Roster
    previous_digest: bytes | None
    governance_root: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.new_roster, Roster):
            raise GovernanceError("new_roster", "must be a Roster")
        if self.previous_digest is not None:
            object.__setattr__(self, "previous_digest", check_bytes(self.previous_digest, "previous_digest", length=DIGEST_LEN))
        object.__setattr__(self, "governance_root", check_bytes(self.governance_root, "governance_root", length=DIGEST_LEN))

    def encode(self) -> bytes:
        return (
            Encoder(ROSTER_CHANGE_TAG)
            .raw(self.governance_root)
            .raw(self.new_roster.encode())
            .optional(self.previous_digest)
            .finish()
        )

    def to_bytes(self) -> bytes:
        return self.encode()

    def digest(self) -> bytes:
        """SHA-256 of :meth:`encode`: a handle for this exact change (a proposal id)."""
        return sha256(self.encode())

    @classmethod
    def from_bytes(cls, data: bytes) -> RosterChange:
        dec = Decoder(data, ROSTER_CHANGE_TAG)
        root = dec.raw("governance_root", length=DIGEST_LEN)
        roster_bytes = dec.raw("new_roster")
        previous = dec.optional("previous_digest", length=DIGEST_LEN)
        dec.finish()
        with field_prefix("new_roster"):
            roster = Roster.from_bytes(roster_bytes)
        out = cls(roster, previous, root)
        check_canonical(out.encode(), data)
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "governance_root": self.governance_root.hex(),
            "new_roster": self.new_roster.to_dict(),
            "previous_digest": None if self.previous_digest is None else self.previous_digest.hex(),
        }

    @classmethod
    def from_dict(cls, data: object) -> RosterChange:
        d = expect_dict(data, "", frozenset({"governance_root", "new_roster", "previous_digest"}))
        with field_prefix("new_roster"):
            roster = Roster.from_dict(d["new_roster"])
        prev = d["previous_digest"]
        previous = None if prev is None else from_hex(prev, "previous_digest", length=DIGEST_LEN)
        return cls(roster, previous, from_hex(d["governance_root"], "governance_root", length=DIGEST_LEN))


@dataclass(frozen=True)
class SignedRosterChange:
    """A roster change with the admin signatures collected for it."""

    change: RosterChange
    signatures: tuple[AdminSignature, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.change, RosterChange):
            raise GovernanceError("change", "must be a RosterChange")
        object.__setattr__(self, "signatures", check_admin_signature_list(self.signatures))

    def to_bytes(self) -> bytes:
        return encode_signed_change(SIGNED_ROSTER_CHANGE_TAG, self.change.encode(), self.signatures)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedRosterChange:
        change_bytes, sigs = decode_signed_change(data, SIGNED_ROSTER_CHANGE_TAG)
        with field_prefix("change"):
            change = RosterChange.from_bytes(change_bytes)
        out = cls(change, sigs)
        check_canonical(out.to_bytes(), data)
        return out

    def to_dict(self) -> dict[str, object]:
        return {"change": self.change.to_dict(), "signatures": admin_signatures_to_list(self.signatures)}

    @classmethod
    def from_dict(cls, data: object) -> SignedRosterChange:
        d = expect_dict(data, "", frozenset({"change", "signatures"}))
        with field_prefix("change"):
            change = RosterChange.from_dict(d["change"])
        return cls(change, admin_signatures_from_list(d["signatures"]))


def rotation_proof_message(identity_public: bytes, encryption_public: bytes, tls_csr_pem: bytes) -> bytes:
    """What a node's *current* identity key signs when it stages new operational keys
    (``PrepareKeyRotation``): tag ``MPCNET/v1/gov/node-key-rotation``, then the new Ed25519 and
    X25519 public keys and the PEM CSR for its new TLS key."""
    return Encoder(ROTATION_PROOF_TAG).raw(identity_public).raw(encryption_public).raw(tls_csr_pem).finish()


def sign_roster_change(change: RosterChange, admin_name: str, private_key: Ed25519PrivateKey) -> AdminSignature:
    """Sign ``change`` (Ed25519 over :meth:`RosterChange.encode`) as admin ``admin_name``."""
    if not isinstance(change, RosterChange):
        raise GovernanceError("change", "must be a RosterChange")
    check_name(admin_name, "admin_name")
    key = check_private_key(private_key, "private_key")
    return AdminSignature(admin_name, key.sign(change.encode()))


def _check_signatures(admins: AdminSet, change: RosterChange, signatures: Sequence[AdminSignature]) -> None:
    if not hmac.compare_digest(change.governance_root, admins.digest()):
        raise GovernanceError("governance_root", "names another governance root (a change made for another cluster or admin set)")
    require_admin_quorum(admins, change.encode(), signatures)


def _check_transition(prev: Roster | None, new: Roster) -> None:
    """The rules of a roster step (module docstring); errors name ``new_roster.…``."""
    if prev is None:
        if new.version != 1:
            raise GovernanceError("new_roster.version", f"must be 1, got {new.version}")
        for i, e in enumerate(new.entries):
            if not e.active:
                raise GovernanceError(f"new_roster.entries[{i}].status", "the first roster's nodes must all be active")
            if e.key_version != 1:
                raise GovernanceError(f"new_roster.entries[{i}].key_version", "must be 1 in the first roster")
        return
    if new.version != prev.version + 1:
        raise GovernanceError("new_roster.version", f"must be {prev.version + 1}, got {new.version}")
    if new.epoch < prev.epoch:
        raise GovernanceError("new_roster.epoch", f"must not go back (was {prev.epoch}, got {new.epoch})")
    new_by_index = {e.index: (i, e) for i, e in enumerate(new.entries)}
    lifecycle = False  # a key or status changed, or a node was added: the epoch must advance
    changed = False
    for old in prev.entries:
        if old.index not in new_by_index:
            raise GovernanceError("new_roster.entries", f"node {old.index} was dropped (revoke it instead: entries are never removed)")
        i, e = new_by_index[old.index]
        field = f"new_roster.entries[{i}]"
        if e == old:
            continue
        changed = True
        if not old.active:
            raise GovernanceError(field, f"node {old.index} is revoked: its entry may not change (revocation is final)")
        if e.name != old.name:
            raise GovernanceError(join(field, "name"), "a node's name may not change")
        if not e.active:  # revocation: nothing else may change
            lifecycle = True
            if e.keys() != old.keys() or e.endpoint != old.endpoint or e.key_version != old.key_version:
                raise GovernanceError(field, "a revocation may change nothing but the status")
            continue
        if e.keys() != old.keys():
            lifecycle = True
            if e.key_version != old.key_version + 1:
                raise GovernanceError(
                    join(field, "key_version"), f"must be {old.key_version + 1} after a key rotation, got {e.key_version}"
                )
        elif e.key_version != old.key_version:
            raise GovernanceError(join(field, "key_version"), "may only change with a key rotation")
    for i, e in enumerate(new.entries):
        if prev.entry(e.index) is None:
            changed = lifecycle = True
            field = f"new_roster.entries[{i}]"
            if not e.active:
                raise GovernanceError(join(field, "status"), "a node is added active")
            if e.key_version != 1:
                raise GovernanceError(join(field, "key_version"), "must be 1 for a new node")
    if not changed:
        raise GovernanceError("new_roster", "changes no entry")
    if not active_entries(new):
        raise GovernanceError("new_roster.entries", "no active node would remain")
    if lifecycle and new.epoch <= prev.epoch:
        raise GovernanceError("new_roster.epoch", f"must advance past {prev.epoch}: keys or members changed")


def verify_roster_change(prev: Roster | None, signed: SignedRosterChange, admins: AdminSet) -> Roster:
    """The new roster if ``signed`` may replace ``prev`` (``None``: no roster yet); else
    :class:`GovernanceError` naming the field.

    Checks, in order: the change names ``admins.digest()``; every signature is by a known admin
    and verifies; at least ``admins.quorum`` distinct admins signed; ``previous_digest`` is
    ``prev.digest()`` (absent iff ``prev`` is None); the version is ``prev.version + 1`` (1
    first); and the step is one the module docstring allows (no entry dropped, revoked entries
    unchanged, names fixed, ``key_version`` + 1 exactly on rotation, new nodes active with
    never-used indices, the epoch advanced by any key, status or membership change).
    """
    if not isinstance(admins, AdminSet):
        raise GovernanceError("admins", "must be an AdminSet")
    if prev is not None and not isinstance(prev, Roster):
        raise GovernanceError("prev", "must be a Roster or None")
    if not isinstance(signed, SignedRosterChange):
        raise GovernanceError("signed", "must be a SignedRosterChange")
    change = signed.change
    _check_signatures(admins, change, signed.signatures)
    if prev is None:
        if change.previous_digest is not None:
            raise GovernanceError("previous_digest", "must be absent: there is no roster yet")
    else:
        if change.previous_digest is None:
            raise GovernanceError("previous_digest", "missing: a roster already exists")
        if not hmac.compare_digest(change.previous_digest, prev.digest()):
            raise GovernanceError("previous_digest", "is not the digest of the current roster (stale, forked or replayed change)")
    _check_transition(prev, change.new_roster)
    return change.new_roster


def verify_roster_history(admins: AdminSet, history: Sequence[SignedRosterChange]) -> Roster:
    """The roster at the end of ``history`` (its first change starts from no roster), each step
    checked by :func:`verify_roster_change`; moreover no identity key, encryption key or TLS
    fingerprint that was ever rotated away may come back (a destroyed key stays refused).
    Errors are prefixed ``history[i].``.
    """
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence) or not history:
        raise GovernanceError("history", "must be a non-empty sequence of SignedRosterChange")
    current: Roster | None = None
    retired: set[bytes] = set()
    for i, signed in enumerate(history):
        with field_prefix(f"history[{i}]"):
            new = verify_roster_change(current, signed, admins)
            in_use = {k for e in new.entries for k in e.keys()}
            back = in_use & retired
            if back:
                raise GovernanceError("new_roster.entries", "a key rotated away earlier is back in the roster")
            if current is not None:
                retired |= {k for e in current.entries for k in e.keys()} - in_use
        current = new
    assert current is not None
    return current
