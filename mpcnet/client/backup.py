"""Backup, recovery and drills in the client SDK (issue 12), mixed into :class:`mpcnet.client.MpcClient`.

The coordinator is untrusted: it relays, it never decides what a recovery officer decrypts.

- :meth:`BackupMixin.recovery_config` verifies the whole recovery-configuration chain
  (:func:`governance.recovery.verify_recovery_config_history`) against the client's *own* admin
  set and refuses a history that does not extend the one verified before (DATA_LOSS).
- :meth:`BackupMixin.export_backup` checks that the bundle is the one asked for (SHA-256 of the
  file), of the key asked for, and verifies it publicly (:func:`mpcnet.common.bundle.verify_bundle`:
  admin signatures of its configuration, the roster chain, every node's signature, the Feldman
  commitments against the public shares, completeness).
- :meth:`BackupMixin.contribute` (an officer) verifies *everything* before decrypting anything:
  the ceremony's shape (a restore or export carries its signed order, a drill none); its bundle
  as above; for a restore or export the order's admin signatures against the client's admin set
  and the recovery configuration *in force* (its export quorum for an export; the bundle's
  configuration must be a change of that verified chain), that it has not expired, and that it
  is an order for this bundle (:func:`mpcnet.common.bundle.check_order_bundle`); the destination
  of every piece from the bundle, the order and the verified roster history, which must extend
  the bundle's (:func:`mpcnet.common.bundle.ceremony_targets`: never the coordinator's targets,
  which must merely agree); for a drill, at least the key's threshold of node-signed
  :class:`~governance.recovery.EpochAttestation` of the bundle's epoch from distinct committee
  members (:func:`check_epoch_attestations`); and that the officer's recovery key is the officer
  of the bundle's configuration named like the caller. Otherwise FAILED_PRECONDITION (DATA_LOSS
  for a malformed answer), nothing decrypted or sent. Each piece is then decrypted, checked
  against the commitments and re-encrypted with age to its target
  (:func:`mpcnet.common.backup.officer_deliveries`): the coordinator only ever sees ciphertexts.
- :meth:`BackupMixin.export_private_key` (the off-line machine of a break-glass export) verifies
  order and bundle the same way, opens the pieces sent to its age identity, reconstructs the
  order's shares and then the key, checks it against the public key and returns it;
  :func:`offline_export_key` does the same from files alone (the bundle, the pieces file of
  :meth:`BackupMixin.export_pieces` and the signed order), with no network.

Errors are :class:`~mpcnet.client.errors.MpcError` whose message starts with the field.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from crypto_core.errors import ProtocolError, UsageError
from governance.errors import GovernanceError
from governance.keyop import KeyOperation, KeyOpKind
from governance.policy import AdminSet
from governance.recovery import (
    BackupBundle,
    EpochAttestation,
    Officer,
    PiecePurpose,
    RecoveryConfig,
    RecoveryConfigChange,
    RecoveryOrder,
    RecoveryOrderKind,
    RecoveryTarget,
    SignedRecoveryConfigChange,
    SignedRecoveryOrder,
    sign_recovery_config_change,
    sign_recovery_order,
    verify_recovery_config_history,
    verify_recovery_order,
)
from governance.roster import Roster, rotate_keys
from governance.text import quote
from mpcnet.client.errors import MpcError
from mpcnet.client.lifecycle import LifecycleProposalView, RosterView, _bad_arg, _data_loss, _refused
from mpcnet.common import agekeys
from mpcnet.common.backup import (
    OfficerReport,
    attribute_deliveries,
    officer_check,
    officer_deliveries,
    open_deliveries,
    recover_key,
)
from mpcnet.common.bundle import BundleError, BundleSummary, ceremony_targets, check_order_bundle, verify_bundle
from mpcnet.common.key_group import public_share_of
from mpcnet.wire.mpc.v1 import coordinator_pb2, coordinator_pb2_grpc

_NOT_SIGNED = "; nothing was signed"  # the suffix of lifecycle._refused

if TYPE_CHECKING:
    from governance.roster import SignedRosterChange
    from mpcnet.client.identities import Identity
    from mpcnet.client.sdk import Key

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")

CEREMONY_KINDS = ("drill", "restore", "export")
CEREMONY_STATES = ("collecting", "running", "follow-up", "done", "failed")
CEREMONY_TERMINAL = ("done", "failed")
TARGET_STATES = ("waiting", "ok", "failed")
PURPOSE = {"drill": PiecePurpose.DRILL, "restore": PiecePurpose.RESTORE, "export": PiecePurpose.EXPORT}
MAX_BUNDLE_BYTES = 16 * 1024 * 1024
_POLL_S = (0.2, 2.0)
ORDER_VALID_FOR_S = 86_400  # a recovery order expires a day after it is built, unless told otherwise
MAX_ORDER_VALID_FOR_S = 30 * 86_400


def x25519_public(private: bytes) -> bytes:
    """The raw 32-byte X25519 public key of a raw private key (an age identity); ValueError if
    it is not 32 bytes."""
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def by_officer(ciphertexts: Sequence[bytes], private: bytes, k: int) -> tuple[dict[int, bytes], dict[int, str]]:
    """Pieces relayed without their officer (``Ceremony.export_pieces``) keyed by the officer
    index bound inside each (:func:`mpcnet.common.backup.attribute_deliveries`):
    ``({officer: her first age file}, {officer: "duplicate"})``. A file that does not open, or
    names no officer of 1..k, is left out (its officer then counts as ``missing``)."""
    first, duplicates, _ = attribute_deliveries(ciphertexts, private, k)
    return first, dict.fromkeys(duplicates, "duplicate")


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: dataclasses as dicts, bytes as hex, enums by lower-case name,
    tuples as lists (for the summaries :mod:`mpcnet.common.bundle` and ``backup`` return)."""
    if is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "to_dict"):
            return plain(value.to_dict())
        return {f.name: plain(getattr(value, f.name)) for f in fields(value) if not f.name.startswith("_")}
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    return value


def bundle_error_text(e: BaseException) -> str:
    """A :class:`BundleError` (or another refusal) as ``field: message (node N, officer M)``."""
    field = getattr(e, "field", "")
    message = getattr(e, "message", None) or getattr(e, "reason", None) or str(e)
    node, officer = getattr(e, "node", None), getattr(e, "officer", None)
    at = ", ".join(w for w in (f"node {node}" if node else "", f"officer {officer}" if officer else "") if w)
    return f"{field + ': ' if field else ''}{message}{f' ({at})' if at else ''}"


def check_bundle(data: bytes, admins: AdminSet) -> tuple[BackupBundle, RecoveryConfig, BundleSummary]:
    """Decode and verify a bundle file publicly against ``admins``: ``(bundle, its recovery
    configuration, verify_bundle's summary)``. MpcError DATA_LOSS naming the field, node or
    officer at fault. No secret needed; no coordinator needed (``mpc backup verify``)."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise _data_loss(f"bundle: more than {MAX_BUNDLE_BYTES} bytes")
    try:
        bundle = BackupBundle.from_file(data)
        config = bundle.check_structure(admins)
        summary = verify_bundle(bundle, admins)
    except (GovernanceError, BundleError, UsageError, ProtocolError, ValueError) as e:
        raise _data_loss(f"bundle.{bundle_error_text(e)}") from None
    return bundle, config, summary


def check_officer_pieces(bundle: BackupBundle, recovery_key: bytes) -> OfficerReport:
    """An officer's own check of her pieces (decrypt + Feldman; :func:`mpcnet.common.backup.officer_check`)."""
    try:
        return officer_check(bundle, recovery_key)
    except (GovernanceError, BundleError, agekeys.AgeKeyError, ValueError) as e:
        raise _data_loss(f"recovery_key: {bundle_error_text(e)}") from None


# --- views -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecoveryConfigView:
    """The recovery-configuration chain verified against the client's admin set: ``config`` the
    one in force (None: no officers configured yet), ``history`` every signed change, version 1 first."""

    config: RecoveryConfig | None
    history: tuple[SignedRecoveryConfigChange, ...]

    def as_dict(self) -> dict[str, Any]:
        c = self.config
        if c is None:
            return {"version": 0, "officers": [], "changes": 0}
        return {
            "version": c.version, "quorum": c.quorum, "export_quorum": c.export_quorum, "drill_period_s": c.drill_period_s,
            "officers": [{"index": i, "name": o.name, "recipient": agekeys.recipient_text(o.recipient)}
                         for i, o in enumerate(c.officers, 1)],
            "digest": self.history[-1].change.digest().hex(), "changes": len(self.history),
        }


@dataclass(frozen=True)
class BackupView:
    """One bundle of a key (``BackupInfo``, without its bytes)."""

    key_id: bytes
    epoch: int
    bundle_digest: bytes
    config_version: int
    created_unix_ms: int
    superseded: bool
    size_bytes: int

    @staticmethod
    def from_proto(b: coordinator_pb2.BackupInfo) -> BackupView:
        if len(b.key_id) != 32 or len(b.bundle_digest) != 32:
            raise _data_loss("backup.key_id/bundle_digest: must be 32 bytes each (the coordinator sent a malformed listing)")
        return BackupView(bytes(b.key_id), b.epoch, bytes(b.bundle_digest), b.recovery_config_version, b.created_unix_ms,
                          b.superseded, b.size_bytes)

    def as_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id.hex(), "epoch": self.epoch, "bundle_digest": self.bundle_digest.hex(),
                "recovery_config_version": self.config_version, "created_unix_ms": self.created_unix_ms,
                "superseded": self.superseded, "size_bytes": self.size_bytes}


@dataclass(frozen=True)
class CeremonyTargetView:
    share_index: int
    node: int
    recipient: bytes
    state: str
    error: str
    outcomes: tuple[tuple[int, str, str], ...]  # (officer index, officer name, outcome)

    def as_dict(self) -> dict[str, Any]:
        return {"share_index": self.share_index, "node": self.node, "recipient": self.recipient.hex(), "state": self.state,
                "error": self.error, "outcomes": [{"officer": i, "name": n, "outcome": o} for i, n, o in self.outcomes]}


@dataclass(frozen=True)
class CeremonyView:
    """A drill, restore or export ceremony as the coordinator reports it, checked for shape: a
    restore/export carries its signed order, whose id is the ceremony's and whose key and bundle
    are the ceremony's (the order's *signatures* are checked by :meth:`BackupMixin.contribute`
    and :meth:`BackupMixin.export_private_key`, against the client's admin set)."""

    ceremony_id: bytes
    kind: str
    key_id: bytes
    epoch: int
    bundle_digest: bytes
    state: str
    targets: tuple[CeremonyTargetView, ...]
    officers: tuple[str, ...]
    quorum: int
    order: SignedRecoveryOrder | None
    follow_up_operation: str
    error: str
    created_unix_ms: int
    updated_unix_ms: int
    started_by: str
    export_pieces: tuple[tuple[int, bytes], ...]
    epoch_attestations: tuple[bytes, ...] = ()

    @property
    def finished(self) -> bool:
        return self.state in CEREMONY_TERMINAL

    @staticmethod
    def from_proto(c: coordinator_pb2.Ceremony) -> CeremonyView:
        """DATA_LOSS naming the field for a malformed ceremony."""
        if len(c.ceremony_id) != 16:
            raise _data_loss("ceremony.ceremony_id: must be 16 bytes")
        if c.kind not in CEREMONY_KINDS:
            raise _data_loss(f"ceremony.kind: unknown kind {quote(c.kind)}")
        if c.state not in CEREMONY_STATES:
            raise _data_loss(f"ceremony.state: unknown state {quote(c.state)}")
        if len(c.key_id) != 32 or len(c.bundle_digest) != 32:
            raise _data_loss("ceremony.key_id/bundle_digest: must be 32 bytes each")
        order = None
        raw_order = bytes(c.signed_order)
        if c.kind == "drill" and raw_order:
            raise _data_loss("ceremony.signed_order: a drill carries no order (malformed ceremony)")
        if c.kind != "drill" and not raw_order:
            raise _data_loss(f"ceremony.signed_order: a {c.kind} carries its admin-signed order, this one has none (malformed ceremony)")
        if c.kind != "drill":
            try:
                order = SignedRecoveryOrder.from_bytes(bytes(c.signed_order))
            except GovernanceError as e:
                raise _data_loss(f"ceremony.signed_order.{e.field}: {e.reason}") from None
            o = order.order
            want = RecoveryOrderKind.RESTORE if c.kind == "restore" else RecoveryOrderKind.EXPORT
            if o.kind is not want or o.order_id != bytes(c.ceremony_id) or o.key_id != bytes(c.key_id) \
                    or o.bundle_digest != bytes(c.bundle_digest) or o.epoch != c.epoch:
                raise _data_loss("ceremony.signed_order: does not match the ceremony (id, kind, key, epoch or bundle)")
        targets = []
        for i, t in enumerate(c.targets):
            if t.state not in TARGET_STATES:
                raise _data_loss(f"ceremony.targets[{i}].state: unknown state {quote(t.state)}")
            targets.append(CeremonyTargetView(t.share_index, t.node, bytes(t.recipient), t.state, t.error,
                                              tuple((o.officer, o.name, o.outcome) for o in t.outcomes)))
        return CeremonyView(
            bytes(c.ceremony_id), c.kind, bytes(c.key_id), c.epoch, bytes(c.bundle_digest), c.state, tuple(targets),
            tuple(c.officers), c.quorum, order, c.follow_up_operation, c.error, c.created_unix_ms, c.updated_unix_ms,
            c.started_by, tuple((p.share_index, bytes(p.ciphertext)) for p in c.export_pieces),
            tuple(bytes(a) for a in c.epoch_attestations),
        )

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "ceremony_id": self.ceremony_id.hex(), "kind": self.kind, "key_id": self.key_id.hex(), "epoch": self.epoch,
            "bundle_digest": self.bundle_digest.hex(), "state": self.state, "quorum": self.quorum,
            "officers": list(self.officers), "targets": [t.as_dict() for t in self.targets],
            "follow_up_operation": self.follow_up_operation, "error": self.error, "started_by": self.started_by,
            "created_unix_ms": self.created_unix_ms, "updated_unix_ms": self.updated_unix_ms,
        }
        if self.order is not None:
            d["order"] = self.order.order.to_dict()
        if self.kind == "export":
            d["export_pieces"] = len(self.export_pieces)
        return d


def check_ceremony_order(c: CeremonyView) -> None:
    """A restore or export carries its signed order, a drill none: FAILED_PRECONDITION (nothing
    decrypted) for a malformed ceremony."""
    if c.kind == "drill" and c.order is not None:
        raise _refused("ceremony.signed_order: a drill carries no order (malformed ceremony; nothing decrypted)")
    if c.kind != "drill" and c.order is None:
        raise _refused(f"ceremony.signed_order: a {c.kind} carries its admin-signed order, this one has none "
                       "(malformed ceremony; nothing decrypted)")


MAX_ATTESTATIONS = 255


ATTESTATION_MAX_AGE_MS = 24 * 3600 * 1000  # an epoch attestation older than this does not count
ATTESTATION_SKEW_MS = 5 * 60 * 1000  # nor one signed further in this client's future


def check_epoch_attestations(
    ceremony_id: bytes, bundle: BackupBundle, roster: Roster, attestations: Sequence[bytes], *, now_ms: int | None = None,
) -> set[int]:
    """The committee members (roster indices) whose :class:`~governance.recovery.EpochAttestation`
    for drill ``ceremony_id`` of ``bundle``'s key verifies with their identity key in ``roster``
    (the verified roster in force), shows the bundle's epoch and is recent (``attested_ms`` at most
    :data:`ATTESTATION_MAX_AGE_MS` before ``now_ms``, this client's clock when None, and at most
    :data:`ATTESTATION_SKEW_MS` after it: a drill kept open past a refresh cannot reuse
    attestations of the refreshed-away epoch); at least the key's threshold of them, or
    FAILED_PRECONDITION naming what is missing. A verified attestation of another epoch refuses
    at once (the bundle is not the key's live epoch: naming the node). Malformed ones, bad
    signatures, other ceremonies or keys, stale ones, non-members and repeats do not count."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    key = bundle.key
    if len(attestations) > MAX_ATTESTATIONS:
        raise _refused(f"ceremony.epoch_attestations: {len(attestations)} attestations, at most {MAX_ATTESTATIONS}")
    good: set[int] = set()
    ignored: list[str] = []
    for i, raw in enumerate(attestations):
        try:
            a = EpochAttestation.from_bytes(raw)
        except GovernanceError as e:
            ignored.append(f"[{i}] malformed ({e.field})")
            continue
        entry = roster.entry(a.node)
        if a.node not in key.committee or entry is None or not entry.active:
            ignored.append(f"[{i}] node {a.node} is not an active member of the key's committee")
        elif not a.verify(entry.identity_key):
            ignored.append(f"[{i}] node {a.node}'s signature does not verify")
        elif not hmac.compare_digest(a.ceremony_id, ceremony_id) or not hmac.compare_digest(a.key_id, key.key_id):
            ignored.append(f"[{i}] node {a.node}'s is for another ceremony or key")
        elif a.epoch != key.epoch:
            raise _refused(f"ceremony.epoch_attestations[{i}]: node {a.node} attests live epoch {a.epoch}, the bundle is of epoch "
                           f"{key.epoch} (a drill of a superseded bundle; nothing decrypted)")
        elif not now - ATTESTATION_MAX_AGE_MS <= a.attested_ms <= now + ATTESTATION_SKEW_MS:
            ignored.append(f"[{i}] node {a.node}'s was signed at {a.attested_ms} ms, not within 24 h of now ({now} ms):"
                           " start a new drill")
        elif a.node in good:
            ignored.append(f"[{i}] node {a.node} twice")
        else:
            good.add(a.node)
    if len(good) < key.threshold:
        why = "; ".join(ignored[:5]) + ("; ..." if len(ignored) > 5 else "")
        raise _refused(f"ceremony.epoch_attestations: {len(good)} valid attestation(s) of epoch {key.epoch} from distinct committee "
                       f"members (nodes {sorted(good)}), the key's threshold {key.threshold} needed"
                       + (f" (ignored: {why})" if why else "") + " (nothing decrypted)")
    return good


PIECES_FORMAT = "mpcnet-export-pieces-v1"
MAX_PIECES_FILE = 4 * 1024 * 1024
MAX_EXPORT_PIECES = 255 * 64


def pieces_document(c: CeremonyView) -> dict[str, Any]:
    """The pieces file of export ceremony ``c`` (see :meth:`BackupMixin.export_pieces`)."""
    assert c.order is not None
    return {
        "format": PIECES_FORMAT, "ceremony_id": c.ceremony_id.hex(), "key_id": c.key_id.hex(), "bundle_digest": c.bundle_digest.hex(),
        "signed_order": c.order.to_bytes().hex(),
        "pieces": [{"share_index": si, "ciphertext": ct.hex()} for si, ct in c.export_pieces],
    }


def _hex_field(doc: Mapping[str, Any], name: str, where: str, *, length: int | None = None, limit: int = MAX_PIECES_FILE) -> bytes:
    v = doc.get(name)
    if not isinstance(v, str) or len(v) > 2 * limit or not re.fullmatch(r"(?:[0-9a-f]{2})*", v):
        raise _bad_arg(f"{where}.{name}: must be lower-case hex")
    out = bytes.fromhex(v)
    if length is not None and len(out) != length:
        raise _bad_arg(f"{where}.{name}: must be {length} bytes")
    return out


def read_pieces_document(doc: Any) -> tuple[bytes, bytes, SignedRecoveryOrder | None, tuple[tuple[int, bytes], ...]]:
    """A pieces file's JSON (:func:`pieces_document`) checked for shape: ``(ceremony id, bundle
    digest, signed order or None when absent, ((share index, age file), ...))``.
    INVALID_ARGUMENT naming the field."""
    if not isinstance(doc, dict) or doc.get("format") != PIECES_FORMAT:
        raise _bad_arg(f"pieces.format: not a pieces file ({PIECES_FORMAT}; 'mpc recovery pieces')")
    cid = _hex_field(doc, "ceremony_id", "pieces", length=16)
    digest = _hex_field(doc, "bundle_digest", "pieces", length=32)
    signed: SignedRecoveryOrder | None = None
    if doc.get("signed_order") is not None:
        try:
            signed = SignedRecoveryOrder.from_bytes(_hex_field(doc, "signed_order", "pieces"))
        except GovernanceError as e:
            raise _bad_arg(f"pieces.signed_order.{e.field}: {e.reason}") from None
    raw = doc.get("pieces")
    if not isinstance(raw, list) or len(raw) > MAX_EXPORT_PIECES:
        raise _bad_arg(f"pieces.pieces: must be a list of at most {MAX_EXPORT_PIECES} pieces")
    out: list[tuple[int, bytes]] = []
    for i, p in enumerate(raw):
        si = p.get("share_index") if isinstance(p, dict) else None
        if not isinstance(p, dict) or type(si) is not int or not 1 <= si <= 255:
            raise _bad_arg(f"pieces.pieces[{i}].share_index: must be an integer 1..255")
        out.append((si, _hex_field(p, "ciphertext", f"pieces.pieces[{i}]", limit=4096)))
    return cid, digest, signed, tuple(out)


def rebuild_exported_key(
    bundle: BackupBundle, order: RecoveryOrder, export_pieces: Sequence[tuple[int, bytes]], identity: bytes,
) -> tuple[int, RecoveryOrder, dict[int, dict[int, str]]]:
    """The whole private key of export ``order`` (verified, and checked to be for ``bundle``),
    reconstructed from ``export_pieces`` ((share index, age file) relayed without their officer)
    encrypted to ``identity`` (raw X25519 private key; its public key must be the order's
    recipient): ``(scalar, order, outcomes per share index)``. Each share from >= m good pieces
    (bound to the order's id as ceremony, checked against the bundle's commitments), the key from
    the order's ``threshold`` shares, checked against the public key. FAILED_PRECONDITION naming
    share and officers when it cannot; nothing here needs the network."""
    if order.kind is not RecoveryOrderKind.EXPORT:
        raise _refused("order.kind: is not a break-glass export")
    try:
        mine = x25519_public(identity)
    except ValueError:
        raise _bad_arg("identity: not a 32-byte X25519 key") from None
    if not hmac.compare_digest(mine, order.export_recipient):
        raise _refused("identity: is not the order's off-line recipient")
    by_share: dict[int, list[bytes]] = {}
    for si, ct in export_pieces:
        by_share.setdefault(si, []).append(ct)
    shares: dict[int, int] = {}
    outcomes: dict[int, dict[int, str]] = {}
    config = bundle.config.change.config
    for t in order.targets:
        mapped, odd = by_officer(by_share.get(t.share_index, []), identity, len(config.officers))
        try:
            secret, why = open_deliveries(bundle, t.share_index, mapped, identity, ceremony_id=order.order_id,
                                          purpose=PiecePurpose.EXPORT)
        except (GovernanceError, BundleError, agekeys.AgeKeyError, ValueError, ProtocolError) as e:
            raise _refused(f"export_pieces[share {t.share_index}]: {bundle_error_text(e)}") from None
        outcomes[t.share_index] = {**why, **odd}
        if secret is None:
            bad = ", ".join(f"officer {i}: {o}" for i, o in sorted(why.items()) if o != "ok") or "too few pieces"
            raise _refused(f"export_pieces[share {t.share_index}]: fewer than {config.quorum} good pieces ({bad})")
        shares[t.share_index] = secret
    try:
        x = recover_key(bundle, shares)
    except BundleError as e:
        raise _refused(f"key: {bundle_error_text(e)} (nothing written)") from None
    finally:
        shares.clear()
    if x == 0 or public_share_of(order.scheme, x) != order.public_key:  # issue 16: in the key's group
        raise _refused("key: the reconstructed key does not match the public key (nothing written)")
    return x, order, outcomes


def offline_export_key(
    admins: AdminSet, bundle_data: bytes, signed: SignedRecoveryOrder, export_pieces: Sequence[tuple[int, bytes]], identity: bytes,
    *, ceremony_id: bytes | None = None,
) -> tuple[int, RecoveryOrder, dict[int, dict[int, str]]]:
    """:func:`rebuild_exported_key` on a machine with no network: the bundle file verified
    against ``admins`` (the client's own admin set), the order's admin signatures against
    ``admins`` and the bundle's recovery configuration (the export quorum the officers checked
    against the configuration in force when they contributed), and the order for this bundle
    (:func:`mpcnet.common.bundle.check_order_bundle`); ``ceremony_id`` (the pieces file's) must
    be the order's id. DATA_LOSS / FAILED_PRECONDITION naming the field."""
    bundle, config, _summary = check_bundle(bundle_data, admins)
    if signed.order.kind is not RecoveryOrderKind.EXPORT:
        raise _refused("order.kind: is not a break-glass export")
    if ceremony_id is not None and not hmac.compare_digest(ceremony_id, signed.order.order_id):
        raise _refused("pieces.ceremony_id: is not the order's id (pieces of another ceremony)")
    try:
        order = verify_recovery_order(signed, admins, config)
        check_order_bundle(order, bundle)
    except GovernanceError as e:
        raise _refused(f"order.{e.field}: {e.reason} (the order does not verify against your admin set)") from None
    except BundleError as e:
        raise _refused(f"{bundle_error_text(e)} (the order is not for this bundle)") from None
    return rebuild_exported_key(bundle, order, export_pieces, identity)


# --- the mixin ---------------------------------------------------------------------------------


class BackupMixin:
    """Backup and recovery methods of :class:`mpcnet.client.MpcClient` (see the module docstring)."""

    if TYPE_CHECKING:
        _stub: coordinator_pb2_grpc.CoordinatorStub
        admin_set: AdminSet | None

        def _call(self, method: grpc.UnaryUnaryMultiCallable[_Req, _Resp], req: _Req, timeout: float | None = None) -> _Resp: ...
        def _me(self) -> Identity: ...
        def _admins(self) -> AdminSet: ...
        def roster(self) -> RosterView: ...
        def _checked_key(self, key_id: bytes | str, *, frost: bool = False) -> Key: ...
        def _lifecycle_proposal(self, r: coordinator_pb2.LifecycleProposal) -> LifecycleProposalView: ...
        def _roster_proposal(self, new_roster: Roster, current: Roster) -> LifecycleProposalView: ...
        def build_key_operation(
            self, kind: KeyOpKind, key_id: bytes | str, *, threshold: int | None = None, nodes: Sequence[int] | None = None,
            reason: str = "",
        ) -> KeyOperation: ...

    # --- recovery configuration -----------------------------------------------------------------
    def recovery_config(self) -> RecoveryConfigView:
        """``GetRecoveryConfig`` verified against this client's admin set. DATA_LOSS if a change
        does not verify, it names another governance root, or it does not extend the history
        this client verified before."""
        admins = self._admins()
        r = self._call(self._stub.GetRecoveryConfig, coordinator_pb2.GetRecoveryConfigRequest())
        if r.governance_root and not hmac.compare_digest(bytes(r.governance_root), admins.digest()):
            raise _data_loss("recovery_config.governance_root: not this cluster's admin set")
        raw = tuple(bytes(b) for b in r.history)
        history: list[SignedRecoveryConfigChange] = []
        for i, b in enumerate(raw):
            try:
                history.append(SignedRecoveryConfigChange.from_bytes(b))
            except GovernanceError as e:
                raise _data_loss(f"recovery_config.history[{i}].{e.field}: {e.reason} (malformed change)") from None
        try:
            config = verify_recovery_config_history(admins, history)
        except GovernanceError as e:
            raise _data_loss(f"recovery_config.{e.field}: {e.reason} (does not verify against this client's admin set)") from None
        seen: tuple[bytes, ...] = tuple(getattr(self, "_recovery_seen", ()))
        if raw[: len(seen)] != seen:
            raise _data_loss(f"recovery_config: version {len(raw)} does not extend version {len(seen)} this client verified "
                             "before (a rolled-back or forked configuration)")
        seen_chains = getattr(self, "seen_chains", None)  # kept across processes (mpcnet.client.seen)
        if seen_chains is not None:
            seen_chains.check("recovery-config", raw, "recovery_config")
        self._recovery_seen = raw
        return RecoveryConfigView(config, tuple(history))

    def _export_quorum(self, signed: object) -> int:
        """The export quorum of the configuration in force (for showing an export order's quorum);
        the smallest one allowed when it cannot be read (an approval checks it again)."""
        try:
            c = self.recovery_config().config
        except MpcError:
            c = None
        return c.export_quorum if c is not None else self._admins().quorum + 1

    def build_recovery_config(
        self, officers: Sequence[tuple[str, bytes]], *, quorum: int, export_quorum: int, drill_period_s: int = 0,
    ) -> RecoveryConfigChange:
        """The next :class:`RecoveryConfigChange`: ``officers`` as ``(name, X25519 public key)``
        in officer-index order. INVALID_ARGUMENT naming the field for what the rules refuse."""
        admins = self._admins()
        view = self.recovery_config()
        prev = view.config
        try:
            config = RecoveryConfig(
                1 if prev is None else prev.version + 1, tuple(Officer(n, k) for n, k in officers), quorum, export_quorum,
                drill_period_s,
            )
            if not admins.quorum < export_quorum <= len(admins.admins):
                raise GovernanceError(
                    "export_quorum", f"must be more than the admin quorum {admins.quorum} and at most the {len(admins.admins)} admins",
                )
            previous = None if prev is None else prev.digest()
            return RecoveryConfigChange(admins.digest(), previous, config)
        except GovernanceError as e:
            raise _bad_arg(f"{e.field}: {e.reason}") from None

    def propose_recovery_config(self, change: RecoveryConfigChange) -> LifecycleProposalView:
        """Propose ``change`` signed with this admin's key (a ``recovery-config`` proposal)."""
        me = self._me()
        signed = SignedRecoveryConfigChange(change, (sign_recovery_config_change(change, me.name, me.signing_key),))
        r = self._call(self._stub.ProposeRecoveryConfig, coordinator_pb2.ProposeRecoveryConfigRequest(signed_change=signed.to_bytes()))
        p = self._lifecycle_proposal(r)
        if not isinstance(p.signed, SignedRecoveryConfigChange) or p.signed.change != change:
            raise _data_loss(f"proposal: the coordinator answered with proposal {p.proposal_id}, not the configuration proposed")
        return p

    # --- bundles --------------------------------------------------------------------------------
    def list_backups(self, key_id: bytes | str | None = None) -> list[BackupView]:
        """The bundles of ``key_id`` (every key's for None), newest first, without their bytes."""
        kid = bytes.fromhex(key_id) if isinstance(key_id, str) else (key_id or b"")
        r = self._call(self._stub.ListBackups, coordinator_pb2.ListBackupsRequest(key_id=kid))
        out = [BackupView.from_proto(b) for b in r.backups]
        if kid and any(b.key_id != kid for b in out):
            raise _data_loss(f"backups: asked for key {kid.hex()}, the coordinator answered with another key's bundle")
        return out

    def export_backup(
        self, key_id: bytes | str, bundle_digest: bytes | None = None,
    ) -> tuple[BackupView, bytes, BackupBundle, BundleSummary]:
        """A key's bundle (the newest, or ``bundle_digest``): ``(info, file bytes, bundle,
        verify_bundle summary)``, checked: the bytes hash to the digest reported (and asked
        for), the bundle is of ``key_id`` and verifies publicly against this client's admin
        set (DATA_LOSS naming the node or officer at fault otherwise)."""
        kid = bytes.fromhex(key_id) if isinstance(key_id, str) else key_id
        admins = self._admins()
        r = self._call(self._stub.ExportBackup, coordinator_pb2.ExportBackupRequest(key_id=kid, bundle_digest=bundle_digest or b""))
        data = bytes(r.bundle)
        digest = hashlib.sha256(data).digest()
        if not hmac.compare_digest(digest, bytes(r.bundle_digest)):
            raise _data_loss("bundle_digest: the bundle sent does not hash to the digest reported")
        if bundle_digest is not None and not hmac.compare_digest(digest, bundle_digest):
            raise _data_loss(f"bundle_digest: asked for bundle {bundle_digest.hex()}, the coordinator sent {digest.hex()}")
        bundle, _config, summary = check_bundle(data, admins)
        if bundle.key.key_id != kid or bytes(r.key_id) != kid:
            raise _data_loss(f"bundle.key.key_id: asked for key {kid.hex()}, the bundle is of key {bundle.key.key_id.hex()}")
        info = BackupView(kid, bundle.key.epoch, digest, bundle.config.change.config.version, r.created_unix_ms, r.superseded, len(data))
        return info, data, bundle, summary

    # --- ceremonies -----------------------------------------------------------------------------
    def start_drill(self, key_id: bytes | str) -> CeremonyView:
        """Open a drill of ``key_id``'s newest bundle (``StartDrill``)."""
        kid = bytes.fromhex(key_id) if isinstance(key_id, str) else key_id
        c = CeremonyView.from_proto(self._call(self._stub.StartDrill, coordinator_pb2.StartDrillRequest(key_id=kid)))
        if c.kind != "drill" or c.key_id != kid:
            raise _data_loss(f"ceremony: asked for a drill of key {kid.hex()}, the coordinator answered with another ceremony")
        return c

    def ceremony(self, ceremony_id: bytes) -> CeremonyView:
        c = CeremonyView.from_proto(self._call(self._stub.GetCeremony, coordinator_pb2.GetCeremonyRequest(ceremony_id=ceremony_id)))
        if c.ceremony_id != ceremony_id:
            raise _data_loss(f"ceremony_id: asked for {ceremony_id.hex()}, the coordinator answered with {c.ceremony_id.hex()}")
        return c

    def ceremonies(self, key_id: bytes | str | None = None) -> list[CeremonyView]:
        kid = bytes.fromhex(key_id) if isinstance(key_id, str) else (key_id or b"")
        r = self._call(self._stub.ListCeremonies, coordinator_pb2.ListCeremoniesRequest(key_id=kid))
        out = [CeremonyView.from_proto(c) for c in r.ceremonies]
        if kid and any(c.key_id != kid for c in out):
            raise _data_loss(f"ceremonies: asked for key {kid.hex()}, the coordinator answered with another key's ceremony")
        return out

    def wait_ceremony(
        self, ceremony_id: bytes, timeout: float | None = None, *, on_change: Callable[[CeremonyView], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> CeremonyView:
        """Poll until the ceremony is done or failed (returned). DEADLINE_EXCEEDED after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause, last = _POLL_S[0], ""
        while True:
            c = self.ceremony(ceremony_id)
            if c.state != last and on_change is not None:
                on_change(c)
            last = c.state
            if c.finished:
                return c
            if deadline is not None and time.monotonic() >= deadline:
                raise MpcError(grpc.StatusCode.DEADLINE_EXCEEDED, f"ceremony {ceremony_id.hex()} still {last} after {timeout:g} s")
            sleep(pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic())))
            pause = min(pause * 2, _POLL_S[1])

    def _config_in_force(self, bundle: BackupBundle) -> RecoveryConfig:
        """The recovery configuration in force (``GetRecoveryConfig``, verified against this
        client's admin set and extending what it verified before), of whose chain the bundle's
        configuration change must be a member. FAILED_PRECONDITION otherwise."""
        view = self.recovery_config()
        if view.config is None:
            raise _refused("recovery_config: no recovery configuration is in force (the coordinator shows none)")
        mine = bundle.config.change.digest()
        if not any(hmac.compare_digest(h.change.digest(), mine) for h in view.history):
            raise _refused(f"bundle.config: version {bundle.config.change.config.version} is not a change of the verified "
                           f"recovery configuration chain (version {view.config.version} in force)")
        return view.config

    def _verified_order(
        self, signed: SignedRecoveryOrder, bundle: BackupBundle, config: RecoveryConfig, *, now_ms: int | None = None,
    ) -> RecoveryOrder:
        """``signed`` verified against this client's admin set and the recovery ``config`` in
        force (the export quorum of the configuration in force, not the bundle's), and an order
        for ``bundle`` (:func:`mpcnet.common.bundle.check_order_bundle`: key, epoch, bundle
        digest, configuration version, committee positions, follow-up); with ``now_ms``, not expired."""
        try:
            order = verify_recovery_order(signed, self._admins(), config, now_ms=now_ms)
        except GovernanceError as e:
            raise _refused(f"order.{e.field}: {e.reason} (the order does not verify against your admin set and the recovery "
                           f"configuration in force, version {config.version})") from None
        try:
            check_order_bundle(order, bundle)
        except BundleError as e:
            raise _refused(f"{bundle_error_text(e)} (the order is not for this bundle)") from None
        return order

    def _targets(self, c: CeremonyView, bundle: BackupBundle, order: RecoveryOrder | None, roster_history: Sequence[SignedRosterChange],
                 ) -> dict[int, bytes]:
        """share index -> the X25519 recipient each piece goes to, from the bundle, the verified
        order and the verified roster history, which must extend the bundle's
        (:func:`mpcnet.common.bundle.ceremony_targets`): never from the coordinator. The
        ceremony's own targets must then be exactly those (same shares, nodes and recipients):
        a coordinator showing others is lying and gets nothing."""
        try:
            want = ceremony_targets(bundle, self._admins(), roster_history, order)
        except BundleError as e:
            raise _refused(f"{bundle_error_text(e)} (nothing decrypted or sent)") from None
        committee = bundle.key.committee
        if order is None:
            nodes = {i: node for i, node in enumerate(committee, 1)}
        else:
            nodes = {t.share_index: t.node for t in order.targets}
        got = {t.share_index: t for t in c.targets}
        if len(got) != len(c.targets) or set(got) != set(want):
            raise _refused(f"ceremony.targets: shares {sorted(got)} are not the ones the {c.kind} names ({sorted(want)})")
        for si, recipient in want.items():
            t = got[si]
            if t.node != nodes[si]:
                raise _refused(f"ceremony.targets[share {si}]: node {t.node} is not node {nodes[si]} the {c.kind} names")
            if not hmac.compare_digest(t.recipient, recipient):
                if nodes[si] == 0:
                    raise _refused(f"ceremony.targets[share {si}]: the recipient is not the order's off-line recipient")
                raise _refused(f"ceremony.targets[share {si}]: the recipient is not node {nodes[si]}'s encryption key in the "
                               "verified roster")
        return want

    def _check_drill(self, c: CeremonyView, bundle: BackupBundle, roster: Roster) -> None:
        """A drill rehearses the key's *live* epoch (a drill of a superseded bundle would hand a
        holder, perhaps corrupted, its refreshed-away share): at least ``threshold`` distinct
        committee members of the bundle's key attest, for this ceremony and key, with their
        identity key in the verified ``roster``, that their live epoch is the bundle's
        (:func:`check_epoch_attestations`); and the newest bundle the coordinator lists is of
        that epoch. FAILED_PRECONDITION naming what is missing otherwise."""
        check_epoch_attestations(c.ceremony_id, bundle, roster, c.epoch_attestations)
        newest = max((b.epoch for b in self.list_backups(c.key_id)), default=bundle.key.epoch)
        if newest != bundle.key.epoch:
            raise _refused(f"ceremony.bundle_digest: a drill rehearses the key's current epoch {newest}, this bundle is of "
                           f"epoch {bundle.key.epoch}")

    def contribute(self, ceremony_id: bytes, recovery_key: bytes) -> CeremonyView:
        """Give this officer's pieces to a collecting ceremony (see the module docstring for
        what is verified first). ``recovery_key``: the officer's raw 32-byte age identity
        (:func:`mpcnet.common.agekeys.read_identity_file`). A refusal before anything is sent
        is FAILED_PRECONDITION ending "nothing was decrypted or sent"."""
        try:
            req = self._contribution(ceremony_id, recovery_key)
        except MpcError as e:  # refused before submitting: say what an officer cares about
            if e.code == grpc.StatusCode.FAILED_PRECONDITION and e.message.endswith(_NOT_SIGNED):
                raise MpcError(e.code, e.message[:-len(_NOT_SIGNED)] + "; nothing was decrypted or sent") from None
            raise
        out = CeremonyView.from_proto(self._call(self._stub.SubmitRecoveryPieces, req))
        if out.ceremony_id != ceremony_id:
            raise _data_loss("ceremony_id: the coordinator answered with another ceremony")
        return out

    def _contribution(self, ceremony_id: bytes, recovery_key: bytes) -> coordinator_pb2.SubmitRecoveryPiecesRequest:
        """What :meth:`contribute` submits, once every check passed (MpcError otherwise)."""
        me = self._me()
        c = self.ceremony(ceremony_id)
        if c.state != "collecting":
            raise _refused(f"ceremony: {ceremony_id.hex()} is {c.state}, not collecting pieces")
        check_ceremony_order(c)
        _info, _data, bundle, _summary = self.export_backup(c.key_id, c.bundle_digest)
        config = bundle.config.change.config
        if bundle.key.epoch != c.epoch:
            raise _refused(f"ceremony.epoch: {c.epoch} is not the bundle's epoch {bundle.key.epoch}")
        roster = self.roster()
        order: RecoveryOrder | None = None
        if c.order is not None:
            order = self._verified_order(c.order, bundle, self._config_in_force(bundle), now_ms=int(time.time() * 1000))
        targets = self._targets(c, bundle, order, roster.history)  # the roster extends the bundle's
        if order is None:
            self._check_drill(c, bundle, roster.roster)
        try:
            mine = config.officer_by_recipient(x25519_public(recovery_key))
        except ValueError:
            raise _bad_arg("recovery_key: not a 32-byte X25519 key") from None
        if mine is None:
            raise _refused(f"recovery_key: not the key of an officer of the bundle's recovery configuration (version {config.version})")
        name = config.officers[mine - 1].name
        if name != me.name:
            raise _refused(f"recovery_key: belongs to officer {quote(name)}, and you act as {quote(me.name)}")
        try:
            pieces = officer_deliveries(bundle, recovery_key, ceremony_id=ceremony_id, purpose=PURPOSE[c.kind], targets=targets)
        except (GovernanceError, BundleError, agekeys.AgeKeyError, ValueError) as e:
            raise _refused(f"recovery_key: {bundle_error_text(e)} (nothing sent)") from None
        return coordinator_pb2.SubmitRecoveryPiecesRequest(
            ceremony_id=ceremony_id, officer=name,
            pieces=[coordinator_pb2.TargetPiece(share_index=si, ciphertext=ct) for si, ct in sorted(pieces.items())],
        )

    # --- recovery orders ------------------------------------------------------------------------
    def build_recovery_order(
        self, key_id: bytes | str, *, nodes: Sequence[int] = (), export_recipient: bytes | None = None, reason: str,
        reshare_threshold: int | None = None, reshare_nodes: Sequence[int] | None = None, valid_for_s: int = ORDER_VALID_FOR_S,
    ) -> RecoveryOrder:
        """A RESTORE order of the shares held by committee members ``nodes`` (roster indices),
        with its follow-up refresh (or a reshare to ``reshare_threshold``-of-``reshare_nodes``);
        or, with ``export_recipient`` (32-byte X25519), a break-glass EXPORT of the key's first
        ``threshold`` shares to it. From the key's checked record, its newest bundle (verified,
        of the key's current epoch) and the verified roster. The order expires ``valid_for_s``
        seconds (1..:data:`MAX_ORDER_VALID_FOR_S`) from now: nodes and the coordinator refuse it
        after that, so an approved order cannot be replayed later."""
        if isinstance(valid_for_s, bool) or not isinstance(valid_for_s, int) or not 1 <= valid_for_s <= MAX_ORDER_VALID_FOR_S:
            raise _bad_arg(f"valid_for: must be 1..{MAX_ORDER_VALID_FOR_S} seconds")
        key = self._checked_key(key_id, frost=True)  # issue 16: FROST keys are backed up and restored too
        info, _data, bundle, _summary = self.export_backup(key.key_id)
        if bundle.key.epoch != key.epoch:
            raise _refused(f"bundle: the newest bundle is of epoch {bundle.key.epoch}, the key is at epoch {key.epoch} "
                           "(wait for the backup of the current epoch)")
        view = self.roster()
        admins = self._admins()
        config = bundle.config.change.config
        follow_up: KeyOperation | None = None
        if export_recipient is not None:
            if nodes or reshare_threshold is not None or reshare_nodes is not None:
                raise _bad_arg("nodes: an export order names no node and no follow-up")
            kind = RecoveryOrderKind.EXPORT
            targets = tuple(RecoveryTarget(i, 0) for i in range(1, key.threshold + 1))
            recipient = export_recipient
        else:
            kind = RecoveryOrderKind.RESTORE
            if not nodes:
                raise _bad_arg("nodes: name the nodes whose shares are restored")
            if len(set(nodes)) != len(nodes):
                raise _bad_arg("nodes: a node appears twice")
            absent = [n for n in nodes if n not in key.committee]
            if absent:
                raise _bad_arg(f"nodes: node {absent[0]} holds no share of key {key.key_id.hex()} (committee {list(key.committee)})")
            targets = tuple(RecoveryTarget(key.committee.index(n) + 1, n) for n in sorted(nodes))
            recipient = b""
            if reshare_threshold is None and reshare_nodes is None:
                follow_up = self.build_key_operation(KeyOpKind.REFRESH, key.key_id, reason=f"recovery: {reason}"[:200])
            else:
                follow_up = self.build_key_operation(KeyOpKind.RESHARE, key.key_id, threshold=reshare_threshold,
                                                     nodes=reshare_nodes, reason=f"recovery: {reason}"[:200])
        try:
            return RecoveryOrder(
                admins.digest(), secrets.token_bytes(16), kind, key.key_id, key.public_key, key.chain_code, key.epoch,
                info.bundle_digest, config.version, view.version, targets, recipient, follow_up, reason,
                int(time.time() * 1000) + valid_for_s * 1000, key.scheme,
            )
        except GovernanceError as e:
            raise _bad_arg(f"{e.field}: {e.reason}") from None

    def propose_recovery_order(self, order: RecoveryOrder) -> LifecycleProposalView:
        """Propose ``order`` signed with this admin's key (a ``recovery-order`` proposal)."""
        me = self._me()
        signed = SignedRecoveryOrder(order, (sign_recovery_order(order, me.name, me.signing_key),))
        r = self._call(self._stub.ProposeRecoveryOrder, coordinator_pb2.ProposeRecoveryOrderRequest(signed_order=signed.to_bytes()))
        p = self._lifecycle_proposal(r)
        if not isinstance(p.signed, SignedRecoveryOrder) or p.signed.order != order:
            raise _data_loss(f"proposal: the coordinator answered with proposal {p.proposal_id}, not the order proposed")
        return p

    def check_recovery_proposal(self, p: LifecycleProposalView) -> None:
        """FAILED_PRECONDITION (nothing signed) unless a ``recovery-config`` proposal extends the
        verified configuration chain, or a ``recovery-order`` proposal is for this cluster, names
        the key's checked public data and current epoch, a bundle of the key that verifies (the
        one the order names) under the configuration in force, targets that are committee members
        at their share positions and active in the verified roster, and a follow-up operation
        that still applies (:meth:`check_lifecycle_proposal` rules)."""
        admins = self._admins()
        if isinstance(p.signed, SignedRecoveryConfigChange):
            change = p.signed.change
            if not hmac.compare_digest(change.governance_root, admins.digest()):
                raise _refused("proposal.governance_root: made for another cluster or admin set")
            now = self.recovery_config().config
            want = None if now is None else now.digest()
            if change.previous_digest != want:
                raise _refused(f"proposal.previous_digest: does not extend the recovery configuration in force "
                               f"(version {0 if now is None else now.version}): stale or forked")
            c = change.config
            if not admins.quorum < c.export_quorum <= len(admins.admins):
                raise _refused(f"config.export_quorum: {c.export_quorum} must be more than the admin quorum {admins.quorum} and at "
                               f"most the {len(admins.admins)} admins")
            return
        if not isinstance(p.signed, SignedRecoveryOrder):
            raise _refused(f"proposal.kind: {quote(p.kind)} is not a recovery proposal")
        o = p.signed.order
        if not hmac.compare_digest(o.governance_root, admins.digest()):
            raise _refused("proposal.governance_root: made for another cluster or admin set")
        key = self._checked_key(o.key_id, frost=True)
        for name, want_v, got in (("public_key", key.public_key, o.public_key), ("chain_code", key.chain_code, o.chain_code),
                                  ("epoch", key.epoch, o.epoch), ("scheme", key.scheme, o.scheme)):
            if want_v != got:
                raise _refused(f"order.{name}: does not match key {key.key_id.hex()} (stale order, or not this key)")
        _info, _data, bundle, _summary = self.export_backup(o.key_id, o.bundle_digest)
        config = self.recovery_config().config
        if config is None or config.version != o.config_version or bundle.config.change.config != config:
            raise _refused(f"order.config_version: {o.config_version} is not the recovery configuration in force")
        view = self.roster()
        if o.roster_version > view.version:
            raise _refused(f"order.roster_version: {o.roster_version} is ahead of the verified roster (version {view.version})")
        for t in o.targets:
            if o.kind is RecoveryOrderKind.RESTORE:
                entry = view.roster.entry(t.node)
                if key.committee[t.share_index - 1 : t.share_index] != (t.node,) or entry is None or not entry.active:
                    raise _refused(f"order.targets: node {t.node} is not the active committee member holding share {t.share_index}")
            elif not 1 <= t.share_index <= len(key.committee):
                raise _refused(f"order.targets: share {t.share_index} does not exist")
        if o.follow_up is not None:
            f = o.follow_up
            if (f.old_epoch, f.old_threshold, f.old_committee) != (key.epoch, key.threshold, key.committee):
                raise _refused("order.follow_up: does not start from the key's current epoch and committee")
            if f.roster_version != view.version:
                raise _refused(f"order.follow_up.roster_version: is {f.roster_version}, the roster in force is version {view.version}")
            absent = [i for i in f.new_committee if i not in set(view.active())]
            if absent:
                raise _refused(f"order.follow_up.new_committee: node {absent[0]} is not an active node of roster version {view.version}")

    # --- break-glass export ---------------------------------------------------------------------
    def export_private_key(self, ceremony_id: bytes, identity: bytes) -> tuple[int, RecoveryOrder, dict[int, dict[int, str]]]:
        """The whole private key of an export ceremony, reconstructed here from the pieces the
        officers encrypted to ``identity`` (raw X25519 private key; its public key must be the
        order's recipient): ``(scalar, order, outcomes per share index)``. The order is verified
        against the admin set and the recovery configuration in force, and must be for the
        ceremony's (verified) bundle; then :func:`rebuild_exported_key`. FAILED_PRECONDITION
        naming share and officers when it cannot."""
        c = self.ceremony(ceremony_id)
        check_ceremony_order(c)
        if c.kind != "export" or c.order is None:
            raise _refused(f"ceremony: {ceremony_id.hex()} is a {c.kind}, not an export")
        _info, _data, bundle, _summary = self.export_backup(c.key_id, c.bundle_digest)
        order = self._verified_order(c.order, bundle, self._config_in_force(bundle))
        return rebuild_exported_key(bundle, order, c.export_pieces, identity)

    def export_pieces(self, ceremony_id: bytes) -> dict[str, Any]:
        """An export ceremony's pieces file for the off-line machine (:data:`PIECES_FORMAT`):
        ``{"format", "ceremony_id", "key_id", "bundle_digest", "signed_order" (hex),
        "pieces": [{"share_index", "ciphertext" (hex)}]}``. The pieces are age files to the
        order's off-line recipient (nothing here can open them); the off-line machine verifies
        everything itself (:func:`offline_export_key`)."""
        c = self.ceremony(ceremony_id)
        check_ceremony_order(c)
        if c.kind != "export" or c.order is None:
            raise _refused(f"ceremony: {ceremony_id.hex()} is a {c.kind}, not an export")
        return pieces_document(c)

    # --- node replacement -----------------------------------------------------------------------
    def replace_node(
        self, index: int, *, identity_key: bytes, encryption_key: bytes, tls_fingerprint: bytes, endpoint: str | None = None,
    ) -> LifecycleProposalView:
        """Propose rotating node ``index``'s keys to a replacement host's (its enrolment: new
        identity, encryption and TLS keys made there; and its endpoint when it moved). The
        replacement starts with an empty store; its shares come back through a restore order."""
        from dataclasses import replace as dc_replace

        view = self.roster()
        entry = view.roster.entry(index)
        if entry is None or not entry.active:
            raise _bad_arg(f"node: {index} is not an active node of roster version {view.version}")
        if identity_key == entry.identity_key or encryption_key == entry.encryption_key or tls_fingerprint == entry.tls_fingerprint:
            raise _bad_arg(f"enrolment: reuses a key of node {index} (a replacement has fresh identity, encryption and TLS keys)")
        try:
            new = rotate_keys(view.roster, index, identity_key=identity_key, encryption_key=encryption_key, tls_fingerprint=tls_fingerprint)
            if endpoint is not None and endpoint != entry.endpoint:
                moved = tuple(dc_replace(e, endpoint=endpoint) if e.index == index else e for e in new.entries)
                new = dc_replace(new, entries=moved)
        except GovernanceError as e:
            raise _bad_arg(f"enrolment.{e.field}: {e.reason}") from None
        return self._roster_proposal(new, view.roster)


__all__ = [
    "CEREMONY_KINDS", "CEREMONY_STATES", "BackupMixin", "BackupView", "CeremonyTargetView", "CeremonyView",
    "RecoveryConfigView", "bundle_error_text", "check_bundle", "check_ceremony_order", "check_epoch_attestations",
    "check_officer_pieces", "offline_export_key", "pieces_document", "plain", "read_pieces_document", "rebuild_exported_key",
    "x25519_public",
]
