"""Key operations (refresh, resharing) and the epoch receipts that commit them (issue 11).

A :class:`KeyOperation` says *what* happens to one key: a **refresh** (same committee, same
threshold, new shares and pairwise state) or a **reshare** (a new committee and/or threshold).
It names the key by id, public key and chain code (so a node that holds no share yet, a new
member, learns them from this admin-governed object and never from old nodes alone), the epoch
and committee it starts from, the committee and threshold it ends with and the roster version
the new committee was checked against. Committees are roster indices in increasing order; the
position of a node in a committee (1-based) is its Shamir share index in that epoch.

Authorization (:func:`check_authorized`), checked by every node against its *own* admin set and
roster: either at least ``quorum`` admins signed the operation (:class:`SignedKeyOperation`), or
it carries no signature and is **roster-implied**: a reshare to exactly the active nodes of the
verifier's current roster (same version), same threshold, at a roster whose membership differs
from the key's committee; or, same version and threshold, the key's committee without its
nodes that are no longer active (a revocation in a committee the admins chose). The admins
already signed that roster change ("removing a node reshares every key without it; adding one
reshares the keys to it"), so a coordinator can do nothing with it that the admins did not order.

An :class:`EpochReceipt` is one new-committee node's Ed25519 signature (its identity key) saying
it durably stored its share of ``epoch`` made in ``session_id``. A *commit certificate* is one
receipt from every member of the new committee, all for the same body
(:func:`verify_commit_certificate`); only with it does a node switch the key to the new epoch and
erase the old share (and a dropped node erase its share), so an interrupted operation leaves the
key signable in exactly one epoch (DKLs23 notes section 9, pitfall 14).

Every encoding is the canonical governance encoding (:mod:`governance.encoding`). Pure: no I/O,
no clock. Errors are :class:`~governance.errors.GovernanceError` naming the field.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._checks import SIGNATURE_LEN, check_bytes, check_int, check_private_key, ed25519_verify, expect_dict, from_hex, json_int
from .encoding import Decoder, Encoder, domain_tag, sha256
from .errors import GovernanceError, field_prefix
from .policy import (
    DIGEST_LEN,
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
from .roster import MAX_INDEX, Roster, active_entries
from .text import check_text, quote

KEY_OPERATION_TAG = domain_tag("key-operation")
# issue 16: an operation on a Schnorr (FROST) key encodes its fields under this tag, appending the
# key's scheme (its public key is then the scheme's group element encoding, its chain code empty)
KEY_OPERATION_V2_TAG = domain_tag("key-operation-v2")
SIGNED_KEY_OPERATION_TAG = domain_tag("signed-key-operation")
EPOCH_RECEIPT_TAG = domain_tag("epoch-receipt")
EPOCH_RECEIPT_MESSAGE_TAG = domain_tag("epoch-receipt-message")

STATE_DIGEST_TAG = b"MPCNET/v1/node/epoch-state"
FROST_STATE_DIGEST_TAG = b"MPCNET/v1/node/epoch-state-frost"  # issue 16
OP_ID_LEN = 16
ID_LEN = 32
PUBLIC_KEY_LEN = 33  # compressed SEC1
SCHEME_ECDSA = "ecdsa-secp256k1"
# issue 16: the FROST schemes and their group key's encoding length (ed25519 RFC 8032 32 bytes;
# BIP340 keys are held untweaked as a 33-byte compressed SEC1 point); as governance.approval.SCHEMES
FROST_KEY_LEN = {"ed25519": 32, "schnorr-secp256k1-bip340": 33}
MAX_EPOCH = 2**32 - 1  # as crypto_core.keyshare
MAX_REASON_CHARS = 200


def epoch_state_digest(
    public_key: bytes, chain_code: bytes, threshold: int, committee: Sequence[int], public_shares: Sequence[bytes],
    scheme: str = SCHEME_ECDSA,
) -> bytes:
    """The :class:`EpochReceipt` ``state_digest``: SHA-256 over the new epoch's public state.
    An ECDSA key (as before issue 16): tag, compressed public key (33 bytes), chain code (32),
    threshold (u16), committee (count u16, each u16) and every public share S'_1..S'_n' (33 bytes
    each, in share-index order). A FROST key (issue 16; its own tag, every variable part
    length-prefixed): tag, scheme (u16 length + ASCII), group key encoding (u16 length + bytes),
    threshold (u16), committee (count u16, each u16), public shares (count u16, each u16 length +
    encoding); it has no chain code (``chain_code`` must be empty). Shared by the node (which
    signs it) and the coordinator (which checks reported FROST public shares against it)."""
    if scheme != SCHEME_ECDSA:
        if chain_code:
            raise GovernanceError("chain_code", f"a {scheme} key has none")

        def lp(b: bytes) -> bytes:
            return len(b).to_bytes(2, "big") + b

        h = hashlib.sha256(FROST_STATE_DIGEST_TAG)
        h.update(lp(scheme.encode("ascii")) + lp(public_key) + threshold.to_bytes(2, "big") + len(committee).to_bytes(2, "big"))
        for i in committee:
            h.update(i.to_bytes(2, "big"))
        h.update(len(public_shares).to_bytes(2, "big"))
        for s in public_shares:
            h.update(lp(s))
        return h.digest()
    h = hashlib.sha256(STATE_DIGEST_TAG)
    h.update(public_key + chain_code + threshold.to_bytes(2, "big") + len(committee).to_bytes(2, "big"))
    for i in committee:
        h.update(i.to_bytes(2, "big"))
    for s in public_shares:
        h.update(s)
    return h.digest()


def _has_tag(data: object, tag: str) -> bool:
    """Whether ``data`` starts with the encoding of ``tag`` (the Decoder then checks it whole)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return False
    head = Encoder(tag).finish()
    return bytes(data[: len(head)]) == head


class KeyOpKind(enum.IntEnum):
    """What a :class:`KeyOperation` does; encoded as a ``uint``."""

    REFRESH = 1
    RESHARE = 2


def _check_kind(value: object, field: str = "kind") -> KeyOpKind:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GovernanceError(field, "must be a KeyOpKind")
    try:
        return KeyOpKind(value)
    except ValueError:
        raise GovernanceError(field, f"must be 1 (refresh) or 2 (reshare), got {value}") from None


def check_committee(value: object, field: str) -> tuple[int, ...]:
    """2..255 distinct roster indices (1..255) in increasing order."""
    if not isinstance(value, (tuple, list)) or not 2 <= len(value) <= MAX_INDEX:
        raise GovernanceError(field, f"must be 2..{MAX_INDEX} roster indices")
    out = tuple(check_int(j, f"{field}[{i}]", 1, MAX_INDEX) for i, j in enumerate(value))
    if list(out) != sorted(set(out)):
        raise GovernanceError(field, "must be distinct roster indices in increasing order")
    return out


def check_compressed_point(value: object, field: str) -> bytes:
    """33 bytes starting 0x02 or 0x03 (the curve check is the node's, :mod:`crypto_core`)."""
    b = check_bytes(value, field, length=PUBLIC_KEY_LEN)
    if b[0] not in (2, 3):
        raise GovernanceError(field, "must be a compressed SEC1 point (prefix 02 or 03)")
    return b


@dataclass(frozen=True)
class KeyOperation:
    """Refresh or reshare key ``key_id`` from ``(old_epoch, old_committee, old_threshold)`` to
    ``(old_epoch + 1, new_committee, new_threshold)``.

    ``op_id``: 16 random bytes chosen by the proposer (two otherwise equal operations differ).
    ``public_key``: 33-byte compressed SEC1; ``chain_code``: 32 bytes; ``key_id``: 32 bytes
    (``crypto_core.keyshare.compute_key_id`` of the two: the node checks it).
    ``scheme`` (issue 16): the key's signature scheme; for a FROST key (``ed25519``,
    ``schnorr-secp256k1-bip340``) ``public_key`` is the group key's encoding (32 bytes Ed25519,
    33 bytes compressed secp256k1, untweaked), ``chain_code`` is empty and ``key_id`` is
    ``crypto_core.frost.keyshare`` ``frost_key_id(scheme, public_key)``; such an operation encodes
    under the v2 tag with the scheme appended (an ECDSA one encodes byte for byte as before).
    A refresh keeps committee and threshold. A reshare changes at least one of them.
    ``roster_version``: the roster version (>= 1) whose active nodes the new committee was
    checked against. ``reason``: one line of text (:func:`governance.text.check_text`, at most
    200 characters; may be empty).
    """

    governance_root: bytes
    op_id: bytes
    kind: KeyOpKind
    key_id: bytes
    public_key: bytes
    chain_code: bytes
    old_epoch: int
    old_threshold: int
    old_committee: tuple[int, ...]
    new_threshold: int
    new_committee: tuple[int, ...]
    roster_version: int
    reason: str = ""
    scheme: str = SCHEME_ECDSA

    def __post_init__(self) -> None:
        object.__setattr__(self, "governance_root", check_bytes(self.governance_root, "governance_root", length=DIGEST_LEN))
        object.__setattr__(self, "op_id", check_bytes(self.op_id, "op_id", length=OP_ID_LEN))
        object.__setattr__(self, "kind", _check_kind(self.kind))
        object.__setattr__(self, "key_id", check_bytes(self.key_id, "key_id", length=ID_LEN))
        if not isinstance(self.scheme, str) or (self.scheme != SCHEME_ECDSA and self.scheme not in FROST_KEY_LEN):
            raise GovernanceError("scheme", f"must be one of {', '.join((SCHEME_ECDSA, *FROST_KEY_LEN))}")
        if self.scheme == SCHEME_ECDSA:
            object.__setattr__(self, "public_key", check_compressed_point(self.public_key, "public_key"))
            object.__setattr__(self, "chain_code", check_bytes(self.chain_code, "chain_code", length=ID_LEN))
        else:  # issue 16: a FROST key (the curve checks are the node's, crypto_core.frost)
            pk = check_bytes(self.public_key, "public_key", length=FROST_KEY_LEN[self.scheme])
            if len(pk) == PUBLIC_KEY_LEN and pk[0] not in (2, 3):
                raise GovernanceError("public_key", "must be a compressed SEC1 point (prefix 02 or 03)")
            object.__setattr__(self, "public_key", pk)
            object.__setattr__(self, "chain_code", check_bytes(self.chain_code, "chain_code", length=0))
        check_int(self.old_epoch, "old_epoch", 0, MAX_EPOCH - 1)
        old = check_committee(self.old_committee, "old_committee")
        new = check_committee(self.new_committee, "new_committee")
        object.__setattr__(self, "old_committee", old)
        object.__setattr__(self, "new_committee", new)
        check_int(self.old_threshold, "old_threshold", 2, len(old))
        check_int(self.new_threshold, "new_threshold", 2, len(new))
        check_int(self.roster_version, "roster_version", 1, 2**63 - 1)
        check_text(self.reason, "reason", MAX_REASON_CHARS)
        if self.kind is KeyOpKind.REFRESH:
            if new != old or self.new_threshold != self.old_threshold:
                raise GovernanceError("new_committee", "a refresh keeps the committee and the threshold (use a reshare)")
        elif new == old and self.new_threshold == self.old_threshold:
            raise GovernanceError("new_committee", "a reshare must change the committee or the threshold (use a refresh)")

    @property
    def new_epoch(self) -> int:
        return self.old_epoch + 1

    @property
    def kept(self) -> tuple[int, ...]:
        """Old-committee nodes that are also in the new one."""
        return tuple(i for i in self.old_committee if i in self.new_committee)

    @property
    def dropped(self) -> tuple[int, ...]:
        """Old-committee nodes not in the new one (they erase their share at the commit)."""
        return tuple(i for i in self.old_committee if i not in self.new_committee)

    @property
    def joining(self) -> tuple[int, ...]:
        """New-committee nodes that held no share of the old epoch."""
        return tuple(i for i in self.new_committee if i not in self.old_committee)

    def share_index(self, node: int, *, new: bool) -> int:
        """``node``'s 1-based Shamir index in the new (or old) committee; GovernanceError if absent."""
        committee = self.new_committee if new else self.old_committee
        if node not in committee:
            raise GovernanceError("new_committee" if new else "old_committee", f"node {node} is not in it")
        return committee.index(node) + 1

    def encode(self) -> bytes:
        """The canonical encoding admins sign (v1 for an ECDSA key, v2 with the scheme appended
        for a FROST key)."""
        v2 = self.scheme != SCHEME_ECDSA
        enc = (
            Encoder(KEY_OPERATION_V2_TAG if v2 else KEY_OPERATION_TAG)
            .raw(self.governance_root)
            .raw(self.op_id)
            .uint(int(self.kind))
            .raw(self.key_id)
            .raw(self.public_key)
            .raw(self.chain_code)
            .uint(self.old_epoch)
            .uint(self.old_threshold)
            .count(len(self.old_committee))
        )
        for i in self.old_committee:
            enc.uint(i)
        enc.uint(self.new_threshold).count(len(self.new_committee))
        for i in self.new_committee:
            enc.uint(i)
        enc.uint(self.roster_version).text(self.reason)
        if v2:
            enc.text(self.scheme)
        return enc.finish()

    def to_bytes(self) -> bytes:
        return self.encode()

    def digest(self) -> bytes:
        return sha256(self.encode())

    @property
    def proposal_id(self) -> str:
        """Hex of the first 16 bytes of :meth:`digest` (as policy proposals)."""
        return self.digest()[:16].hex()

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyOperation:
        v2 = _has_tag(data, KEY_OPERATION_V2_TAG)
        dec = Decoder(data, KEY_OPERATION_V2_TAG if v2 else KEY_OPERATION_TAG)
        root = dec.raw("governance_root", length=DIGEST_LEN)
        op_id = dec.raw("op_id", length=OP_ID_LEN)
        kind = _check_kind(dec.uint("kind"))
        key_id = dec.raw("key_id", length=ID_LEN)
        pk = dec.raw("public_key") if v2 else dec.raw("public_key", length=PUBLIC_KEY_LEN)
        cc = dec.raw("chain_code") if v2 else dec.raw("chain_code", length=ID_LEN)
        old_epoch = dec.uint("old_epoch")
        old_t = dec.uint("old_threshold")
        old = tuple(dec.uint(f"old_committee[{i}]") for i in range(dec.count("old_committee", max_count=MAX_INDEX)))
        new_t = dec.uint("new_threshold")
        new = tuple(dec.uint(f"new_committee[{i}]") for i in range(dec.count("new_committee", max_count=MAX_INDEX)))
        version = dec.uint("roster_version")
        reason = dec.text("reason")
        scheme = dec.text("scheme") if v2 else SCHEME_ECDSA
        if v2 and scheme == SCHEME_ECDSA:
            raise GovernanceError("scheme", "an ecdsa-secp256k1 key operation is encoded with the v1 tag")
        dec.finish()
        out = cls(root, op_id, kind, key_id, pk, cc, old_epoch, old_t, old, new_t, new, version, reason, scheme)
        check_canonical(out.encode(), data)
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "governance_root": self.governance_root.hex(), "op_id": self.op_id.hex(), "kind": self.kind.name.lower(),
            "key_id": self.key_id.hex(), "public_key": self.public_key.hex(), "chain_code": self.chain_code.hex(),
            "old_epoch": self.old_epoch, "old_threshold": self.old_threshold, "old_committee": list(self.old_committee),
            "new_threshold": self.new_threshold, "new_committee": list(self.new_committee),
            "roster_version": self.roster_version, "reason": self.reason,
        } | ({"scheme": self.scheme} if self.scheme != SCHEME_ECDSA else {})

    @classmethod
    def from_dict(cls, data: object) -> KeyOperation:
        keys = frozenset({
            "governance_root", "op_id", "kind", "key_id", "public_key", "chain_code", "old_epoch", "old_threshold",
            "old_committee", "new_threshold", "new_committee", "roster_version", "reason",
        })
        if isinstance(data, dict) and "scheme" in data:  # issue 16: a FROST key's operation
            keys |= {"scheme"}
        d = expect_dict(data, "", keys)
        scheme = d.get("scheme", SCHEME_ECDSA)
        if not isinstance(scheme, str):
            raise GovernanceError("scheme", "must be a string")
        frost = scheme != SCHEME_ECDSA
        kind = d["kind"]
        if kind not in ("refresh", "reshare"):
            raise GovernanceError("kind", f"must be 'refresh' or 'reshare', got {quote(kind)}")

        def ints(name: str) -> tuple[int, ...]:
            v = d[name]
            if not isinstance(v, list) or len(v) > MAX_INDEX:
                raise GovernanceError(name, f"must be a list of at most {MAX_INDEX} roster indices")
            return tuple(json_int(x, f"{name}[{i}]") for i, x in enumerate(v))

        reason = d["reason"]
        if not isinstance(reason, str):
            raise GovernanceError("reason", "must be a string")
        return cls(
            from_hex(d["governance_root"], "governance_root", length=DIGEST_LEN), from_hex(d["op_id"], "op_id", length=OP_ID_LEN),
            KeyOpKind.REFRESH if kind == "refresh" else KeyOpKind.RESHARE,
            from_hex(d["key_id"], "key_id", length=ID_LEN),
            from_hex(d["public_key"], "public_key", length=FROST_KEY_LEN.get(scheme, PUBLIC_KEY_LEN)),
            from_hex(d["chain_code"], "chain_code", length=0 if frost else ID_LEN), json_int(d["old_epoch"], "old_epoch"),
            json_int(d["old_threshold"], "old_threshold"), ints("old_committee"), json_int(d["new_threshold"], "new_threshold"),
            ints("new_committee"), json_int(d["roster_version"], "roster_version"), reason, scheme,
        )


@dataclass(frozen=True)
class SignedKeyOperation:
    """A key operation with the admin signatures collected for it (none: roster-implied)."""

    operation: KeyOperation
    signatures: tuple[AdminSignature, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.operation, KeyOperation):
            raise GovernanceError("operation", "must be a KeyOperation")
        object.__setattr__(self, "signatures", check_admin_signature_list(self.signatures))

    def to_bytes(self) -> bytes:
        return encode_signed_change(SIGNED_KEY_OPERATION_TAG, self.operation.encode(), self.signatures)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedKeyOperation:
        op_bytes, sigs = decode_signed_change(data, SIGNED_KEY_OPERATION_TAG)
        with field_prefix("operation"):
            op = KeyOperation.from_bytes(op_bytes)
        out = cls(op, sigs)
        check_canonical(out.to_bytes(), data)
        return out

    def to_dict(self) -> dict[str, object]:
        return {"operation": self.operation.to_dict(), "signatures": admin_signatures_to_list(self.signatures)}

    @classmethod
    def from_dict(cls, data: object) -> SignedKeyOperation:
        d = expect_dict(data, "", frozenset({"operation", "signatures"}))
        with field_prefix("operation"):
            op = KeyOperation.from_dict(d["operation"])
        return cls(op, admin_signatures_from_list(d["signatures"]))


def sign_key_operation(operation: KeyOperation, admin_name: str, private_key: Ed25519PrivateKey) -> AdminSignature:
    """Admin ``admin_name``'s Ed25519 signature over :meth:`KeyOperation.encode`."""
    if not isinstance(operation, KeyOperation):
        raise GovernanceError("operation", "must be a KeyOperation")
    check_text(admin_name, "admin_name", 64)
    key = check_private_key(private_key, "private_key")
    return AdminSignature(admin_name, key.sign(operation.encode()))


def roster_implied(operation: KeyOperation, roster: Roster) -> bool:
    """True iff ``operation`` is a reshare that ``roster`` (the verifier's current one) implies:
    a reshare, at ``roster.version``, same threshold, whose new committee is either exactly the
    roster's active nodes (the key's committee differing from them), or the key's committee
    without its nodes that are no longer active (at least one), adding nobody: a revocation
    drops the node from a committee the admins chose without re-adding nodes they left out.
    (A node additionally refuses to *add* a node that was in the roster when the key's
    committee was set: :func:`mpc_node.keyops.check_reshare`.)"""
    active = tuple(e.index for e in active_entries(roster))
    kept = tuple(i for i in operation.old_committee if i in active)
    return (
        operation.kind is KeyOpKind.RESHARE
        and operation.roster_version == roster.version
        and operation.new_threshold == operation.old_threshold
        and operation.old_committee != active
        and (operation.new_committee == active or (operation.new_committee == kept and kept != operation.old_committee))
    )


def refresh_due(period_s: int, last_change_ms: int, now_ms: int) -> bool:
    """True iff a key policy's ``refresh_period_s`` (0: none) makes a refresh due: the key's shares
    (changed last at ``last_change_ms``, the verifier's own record) are at least that old by the
    verifier's clock ``now_ms`` (all in ms since the epoch)."""
    return period_s > 0 and now_ms - last_change_ms >= period_s * 1000


def check_authorized(
    signed: SignedKeyOperation, admins: AdminSet, roster: Roster, *, scheduled: bool = False, ordered: bool = False
) -> str:
    """Whether the verifier (its own ``admins`` and current ``roster``) may take part in ``signed``.

    ``scheduled``: the verifier's own key policy makes a refresh of this key due
    (:func:`refresh_due`); an unsigned *refresh* is then authorized by the schedule.
    ``ordered``: the verifier found this exact operation (same encoding) as the ``follow_up`` of
    a recovery order it verified and installed (:func:`governance.recovery.verify_recovery_order`);
    an unsigned operation is then authorized by that admin-signed order.
    Returns ``"admin-quorum"``, ``"recovery-order"``, ``"roster"`` or ``"schedule"``; raises GovernanceError:
    ``governance_root`` (another cluster), ``roster_version`` (not the verifier's current roster),
    ``new_committee`` (a node not active in the roster), ``signatures`` (no quorum, and not
    roster-implied; or a signature that does not verify).
    """
    if not isinstance(signed, SignedKeyOperation):
        raise GovernanceError("signed", "must be a SignedKeyOperation")
    op = signed.operation
    if not hmac.compare_digest(op.governance_root, admins.digest()):
        raise GovernanceError("governance_root", "names another governance root (another cluster or admin set)")
    if op.roster_version != roster.version:
        raise GovernanceError(
            "roster_version", f"is {op.roster_version}, the current roster is version {roster.version} (stale or early operation)"
        )
    active = {e.index for e in active_entries(roster)}
    absent = [i for i in op.new_committee if i not in active]
    if absent:
        raise GovernanceError("new_committee", f"node {absent[0]} is not an active node of roster version {roster.version}")
    if signed.signatures:
        require_admin_quorum(admins, op.encode(), signed.signatures)
        return "admin-quorum"
    if ordered:
        return "recovery-order"
    if roster_implied(op, roster):
        return "roster"
    if scheduled and op.kind is KeyOpKind.REFRESH:
        return "schedule"
    raise GovernanceError(
        "signatures", f"missing: needs {admins.quorum} admin signature(s) (not implied by the roster, and no refresh is due)"
    )


# --- epoch receipts ----------------------------------------------------------------------------


def _signed_encoding(tag: str, message: bytes, signature: bytes) -> bytes:
    """A node-signed statement: ``tag``, its message encoding, the 64-byte signature."""
    return Encoder(tag).raw(message).raw(signature).finish()


def _signed_decoding(data: bytes, tag: str, what: str) -> tuple[bytes, bytes]:
    """(message encoding, signature) of :func:`_signed_encoding`'s output (strict)."""
    outer = Decoder(data, tag, what=what)
    msg = outer.raw("message")
    signature = outer.raw("signature", length=SIGNATURE_LEN)
    outer.finish()
    return msg, signature


@dataclass(frozen=True)
class EpochReceipt:
    """Node ``holder`` durably stored its share of ``epoch`` of ``key_id``, made in session
    ``session_id`` for operation ``op_digest`` (:meth:`KeyOperation.digest`), whose public state
    (public key, chain code, threshold, committee, every public share) hashes to ``state_digest``.
    ``signature``: the holder's Ed25519 identity signature over everything else."""

    governance_root: bytes
    key_id: bytes
    op_digest: bytes
    session_id: bytes
    epoch: int
    threshold: int
    committee: tuple[int, ...]
    state_digest: bytes
    holder: int
    signature: bytes = bytes(SIGNATURE_LEN)

    def __post_init__(self) -> None:
        for name in ("governance_root", "key_id", "op_digest", "session_id", "state_digest"):
            object.__setattr__(self, name, check_bytes(getattr(self, name), name, length=ID_LEN))
        check_int(self.epoch, "epoch", 1, MAX_EPOCH)
        object.__setattr__(self, "committee", check_committee(self.committee, "committee"))
        check_int(self.threshold, "threshold", 2, len(self.committee))
        check_int(self.holder, "holder", 1, MAX_INDEX)
        if self.holder not in self.committee:
            raise GovernanceError("holder", f"node {self.holder} is not in the committee")
        object.__setattr__(self, "signature", check_bytes(self.signature, "signature", length=SIGNATURE_LEN))

    def body(self) -> tuple[object, ...]:
        """Everything but holder and signature (equal in every receipt of one certificate)."""
        return (self.governance_root, self.key_id, self.op_digest, self.session_id, self.epoch, self.threshold,
                self.committee, self.state_digest)

    def message(self) -> bytes:
        enc = (
            Encoder(EPOCH_RECEIPT_MESSAGE_TAG).raw(self.governance_root).raw(self.key_id).raw(self.op_digest)
            .raw(self.session_id).uint(self.epoch).uint(self.threshold).count(len(self.committee))
        )
        for i in self.committee:
            enc.uint(i)
        return enc.raw(self.state_digest).uint(self.holder).finish()

    def to_bytes(self) -> bytes:
        return _signed_encoding(EPOCH_RECEIPT_TAG, self.message(), self.signature)

    @classmethod
    def from_bytes(cls, data: bytes) -> EpochReceipt:
        msg, signature = _signed_decoding(data, EPOCH_RECEIPT_TAG, "receipt")
        dec = Decoder(msg, EPOCH_RECEIPT_MESSAGE_TAG, what="receipt message")
        root = dec.raw("governance_root", length=ID_LEN)
        key_id = dec.raw("key_id", length=ID_LEN)
        op_digest = dec.raw("op_digest", length=ID_LEN)
        sid = dec.raw("session_id", length=ID_LEN)
        epoch = dec.uint("epoch")
        t = dec.uint("threshold")
        committee = tuple(dec.uint(f"committee[{i}]") for i in range(dec.count("committee", max_count=MAX_INDEX)))
        state = dec.raw("state_digest", length=ID_LEN)
        holder = dec.uint("holder")
        dec.finish()
        out = cls(root, key_id, op_digest, sid, epoch, t, committee, state, holder, signature)
        check_canonical(out.to_bytes(), data)
        return out

    def verify(self, identity_public: bytes) -> bool:
        return ed25519_verify(identity_public, self.signature, self.message())


def sign_epoch_receipt(receipt: EpochReceipt, identity: Ed25519PrivateKey) -> EpochReceipt:
    """``receipt`` with its ``signature`` made by ``identity`` (the holder's identity key)."""
    if not isinstance(receipt, EpochReceipt):
        raise GovernanceError("receipt", "must be an EpochReceipt")
    key = check_private_key(identity, "identity")
    return dataclasses.replace(receipt, signature=key.sign(receipt.message()))


@dataclass(frozen=True)
class CommitCertificate:
    """What a complete set of epoch receipts proves (see :func:`verify_commit_certificate`)."""

    key_id: bytes
    op_digest: bytes
    session_id: bytes
    epoch: int
    threshold: int
    committee: tuple[int, ...]
    state_digest: bytes


def verify_commit_certificate(
    receipts: Sequence[bytes], *, governance_root: bytes, key_id: bytes, session_id: bytes, identities: Mapping[int, bytes]
) -> CommitCertificate:
    """Check that ``receipts`` (encoded :class:`EpochReceipt`) hold exactly one receipt from every
    member of one committee, all for the same body, for ``key_id``, ``session_id`` and this
    ``governance_root``, each signed by its holder's identity key in ``identities`` (roster index
    -> raw Ed25519 public key: the verifier's own roster). Returns the certificate; else
    GovernanceError naming ``receipts[i].<field>`` or ``receipts`` (a member missing).
    """
    if isinstance(receipts, (str, bytes)) or not isinstance(receipts, Sequence) or not receipts:
        raise GovernanceError("receipts", "must be a non-empty sequence of encoded EpochReceipt")
    if len(receipts) > MAX_INDEX:
        raise GovernanceError("receipts", f"more than {MAX_INDEX} receipts")
    first: EpochReceipt | None = None
    holders: set[int] = set()
    for i, raw in enumerate(receipts):
        with field_prefix(f"receipts[{i}]"):
            if not isinstance(raw, (bytes, bytearray, memoryview)):
                raise GovernanceError("receipt", "must be bytes")
            r = EpochReceipt.from_bytes(bytes(raw))
            if not hmac.compare_digest(r.governance_root, governance_root):
                raise GovernanceError("governance_root", "names another governance root")
            if r.key_id != key_id:
                raise GovernanceError("key_id", "is for another key")
            if r.session_id != session_id:
                raise GovernanceError("session_id", "is for another session")
            if first is not None and r.body() != first.body():
                raise GovernanceError("state_digest", f"node {r.holder} stored a different epoch state than node {first.holder}")
            if r.holder in holders:
                raise GovernanceError("holder", f"node {r.holder} appears twice")
            key = identities.get(r.holder)
            if key is None:
                raise GovernanceError("holder", f"node {r.holder} is not an active node of the verifier's roster")
            if not r.verify(key):
                raise GovernanceError("signature", f"does not verify under node {r.holder}'s identity key")
            holders.add(r.holder)
            first = first or r
    assert first is not None
    missing = sorted(set(first.committee) - holders)
    if missing:
        raise GovernanceError("receipts", f"node {missing[0]} of the new committee has not confirmed (incomplete certificate)")
    return CommitCertificate(
        first.key_id, first.op_digest, first.session_id, first.epoch, first.threshold, first.committee, first.state_digest
    )


# --- abandoned sessions --------------------------------------------------------------------------

EPOCH_ABANDONMENT_TAG = domain_tag("epoch-abandonment")


@dataclass(frozen=True)
class EpochAbandonment:
    """Node ``holder`` will never confirm (sign an :class:`EpochReceipt` for) session
    ``session_id`` of key ``key_id``: it had not released a receipt for it, and it recorded the
    abandonment durably before signing this (``DiscardEpoch``). A commit certificate for that
    session needs ``holder``'s receipt if ``holder`` is in its new committee, so with this
    statement from such a member the session can never commit: a node that confirmed it may
    confirm another session of the same epoch (the one-session-per-epoch rule's release).
    ``signature``: the holder's Ed25519 identity signature over the rest."""

    governance_root: bytes
    key_id: bytes
    session_id: bytes
    holder: int
    signature: bytes = bytes(SIGNATURE_LEN)

    def __post_init__(self) -> None:
        for name in ("governance_root", "key_id", "session_id"):
            object.__setattr__(self, name, check_bytes(getattr(self, name), name, length=ID_LEN))
        check_int(self.holder, "holder", 1, MAX_INDEX)
        object.__setattr__(self, "signature", check_bytes(self.signature, "signature", length=SIGNATURE_LEN))

    def message(self) -> bytes:
        return (
            Encoder(EPOCH_ABANDONMENT_TAG).raw(self.governance_root).raw(self.key_id).raw(self.session_id)
            .uint(self.holder).finish()
        )

    def to_bytes(self) -> bytes:
        return _signed_encoding(EPOCH_ABANDONMENT_TAG, self.message(), self.signature)

    @classmethod
    def from_bytes(cls, data: bytes) -> EpochAbandonment:
        msg, signature = _signed_decoding(data, EPOCH_ABANDONMENT_TAG, "abandonment")
        dec = Decoder(msg, EPOCH_ABANDONMENT_TAG, what="abandonment message")
        root = dec.raw("governance_root", length=ID_LEN)
        key_id = dec.raw("key_id", length=ID_LEN)
        sid = dec.raw("session_id", length=ID_LEN)
        holder = dec.uint("holder")
        dec.finish()
        out = cls(root, key_id, sid, holder, signature)
        check_canonical(out.to_bytes(), data)
        return out

    def verify(self, identity_public: bytes) -> bool:
        return ed25519_verify(identity_public, self.signature, self.message())


def sign_epoch_abandonment(abandonment: EpochAbandonment, identity: Ed25519PrivateKey) -> EpochAbandonment:
    """``abandonment`` signed by ``identity`` (the holder's identity key)."""
    if not isinstance(abandonment, EpochAbandonment):
        raise GovernanceError("abandonment", "must be an EpochAbandonment")
    key = check_private_key(identity, "identity")
    return dataclasses.replace(abandonment, signature=key.sign(abandonment.message()))


def session_abandoned(
    proofs: Sequence[bytes], *, governance_root: bytes, key_id: bytes, session_id: bytes, committee: Sequence[int],
    identities: Mapping[int, bytes],
) -> int | None:
    """The member of ``committee`` (the session's new committee, from the verifier's own record)
    whose valid :class:`EpochAbandonment` of ``session_id`` is among ``proofs`` (encoded), checked
    against ``identities`` (the verifier's active roster); None if there is none. Malformed or
    foreign proofs are ignored (they prove nothing)."""
    for raw in proofs[:MAX_INDEX]:
        try:
            a = EpochAbandonment.from_bytes(bytes(raw))
        except GovernanceError:
            continue
        if not (
            hmac.compare_digest(a.governance_root, governance_root) and a.key_id == key_id and a.session_id == session_id
            and a.holder in committee
        ):
            continue
        key = identities.get(a.holder)
        if key is not None and a.verify(key):
            return a.holder
    return None
