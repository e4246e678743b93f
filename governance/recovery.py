"""Recovery officers, off-line backups, recovery orders and drills (issue 12; spec/governance-v1.md
sections 5.21-5.32).

The **recovery configuration** (:class:`RecoveryConfig`) names the k recovery officers (a name and
a 32-byte X25519 ``age`` recipient each; an officer's index is her 1-based position), the
recovery quorum m (2 <= m <= k), the ``export_quorum`` (how many distinct admins must sign a
break-glass export order) and ``drill_period_s`` (0: no drill required). Like the roster it only
changes through a :class:`RecoveryConfigChange` signed by the admin quorum, naming the
governance root and the digest of the configuration it replaces, so its history is one chain.

A node splits its share of key K at epoch e m-of-k (Feldman) and signs a :class:`BackupPart`:
the m commitments (the first is its public share) and k age files, piece j encrypted to officer
j (each decrypts to a :class:`BackupPiece`). The coordinator assembles every part of the key's
committee, the key's public record (:class:`BackupKey`), the signed recovery configuration change
and the roster history into a :class:`BackupBundle` file; :meth:`BackupBundle.check_structure`
checks everything that needs no elliptic-curve math (that part is ``mpcnet.common.bundle``).

An officer never sends a piece in the clear: she re-encrypts it to a ceremony's target as a
:class:`PieceDelivery` (bound to the ceremony, purpose, key, epoch, share, officer and bundle).
A restore or break-glass export needs a :class:`RecoveryOrder` signed by the admins
(:func:`verify_recovery_order`: the admin quorum for a restore, ``export_quorum`` distinct admins
for an export); a restore order carries its follow-up :class:`~governance.keyop.KeyOperation`,
which nodes then accept unsigned (``check_authorized(..., ordered=True)``). Nodes answer with
signed :class:`RecoveryReceipt` and :class:`DrillReport` statements, and before a drill with
:class:`EpochAttestation` statements (the epoch of the key each one holds live), so that a drill
only ever rebuilds shares of the current epoch.

Pure: no I/O, no clock, no elliptic-curve math (Ed25519 signatures only). Every failure is a
:class:`~governance.errors.GovernanceError` naming the field. Secret values (the scalar inside a
:class:`BackupPiece` or :class:`PieceDelivery`) never appear in a ``repr`` or an error.
"""

from __future__ import annotations

import dataclasses
import enum
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._checks import SIGNATURE_LEN, check_bytes, check_int, check_name, check_private_key, ed25519_verify, expect_dict, from_hex, json_int
from .approval import SCHEME_ECDSA, SCHEME_ED25519, SCHEMES, _has_tag
from .encoding import Decoder, Encoder, domain_tag, sha256
from .errors import GovernanceError, field_prefix
from .keyop import (
    ID_LEN,
    MAX_EPOCH,
    PUBLIC_KEY_LEN,
    KeyOperation,
    _signed_decoding,
    _signed_encoding,
    check_committee,
    check_compressed_point,
)
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
from .roster import MAX_INDEX, X25519_KEY_LEN, Roster, SignedRosterChange, check_x25519_public_key, verify_roster_history
from .text import check_text, quote

OFFICER_TAG = domain_tag("recovery-officer")
RECOVERY_CONFIG_TAG = domain_tag("recovery-config")
RECOVERY_CONFIG_CHANGE_TAG = domain_tag("recovery-config-change")
SIGNED_RECOVERY_CONFIG_CHANGE_TAG = domain_tag("signed-recovery-config-change")
BACKUP_KEY_TAG = domain_tag("backup-key")
# issue 16: the public record of a FROST key (ed25519, schnorr-secp256k1-bip340) carries its scheme
# under this tag; an ecdsa-secp256k1 record encodes with BACKUP_KEY_TAG byte for byte as before
BACKUP_KEY_V2_TAG = domain_tag("backup-key-v2")
BACKUP_PIECE_TAG = domain_tag("backup-piece")
BACKUP_PART_TAG = domain_tag("backup-part")
SIGNED_BACKUP_PART_TAG = domain_tag("signed-backup-part")
BACKUP_BUNDLE_TAG = domain_tag("backup-bundle")
PIECE_DELIVERY_TAG = domain_tag("piece-delivery")
RECOVERY_ORDER_TAG = domain_tag("recovery-order")
# issue 16: an order for a FROST key appends the key's scheme under this tag (public key of its group,
# empty chain code); an ecdsa-secp256k1 order encodes with RECOVERY_ORDER_TAG byte for byte as before
RECOVERY_ORDER_V2_TAG = domain_tag("recovery-order-v2")
SIGNED_RECOVERY_ORDER_TAG = domain_tag("signed-recovery-order")
RECOVERY_RECEIPT_TAG = domain_tag("recovery-receipt")
RECOVERY_RECEIPT_MESSAGE_TAG = domain_tag("recovery-receipt-message")
DRILL_REPORT_TAG = domain_tag("drill-report")
DRILL_REPORT_MESSAGE_TAG = domain_tag("drill-report-message")
EPOCH_ATTESTATION_TAG = domain_tag("epoch-attestation")
EPOCH_ATTESTATION_MESSAGE_TAG = domain_tag("epoch-attestation-message")

BUNDLE_MAGIC = b"MPCNET-BACKUP-BUNDLE\n"
BUNDLE_FORMAT_VERSION = 1
MAX_BUNDLE_BYTES = 16 << 20
MAX_OFFICERS = 64
MAX_EXPORT_QUORUM = 255
MAX_DRILL_PERIOD_S = 10 * 365 * 86400
MAX_PIECE_FILE = 2048
AGE_HEADER = b"age-encryption.org/v1\n"
SCALAR_LEN = 32
CEREMONY_ID_LEN = 16
ORDER_ID_LEN = 16
MAX_LABEL_BYTES = 256  # crypto_core.params.MAX_LABEL
MAX_REASON_CHARS = 200
MAX_MS = 2**63 - 1
MAX_ROSTER_HISTORY = 65536
OUTCOMES = frozenset({"ok", "bad-piece", "undecryptable", "wrong-binding", "duplicate", "missing"})


def _node(node: int) -> str:
    return f"node {node}"


# --- officers and the recovery configuration -------------------------------------------------


@dataclass(frozen=True)
class Officer:
    """One recovery officer: ``name`` (:data:`governance.text.NAME_RE`) and ``recipient``, her raw
    32-byte X25519 public key (the ``age1...`` recipient; canonical, not low-order)."""

    name: str
    recipient: bytes

    def __post_init__(self) -> None:
        check_name(self.name, "name")
        object.__setattr__(self, "recipient", check_x25519_public_key(self.recipient, "recipient"))

    def encode(self) -> bytes:
        return Encoder(OFFICER_TAG).text(self.name).raw(self.recipient).finish()

    @classmethod
    def from_bytes(cls, data: bytes) -> Officer:
        dec = Decoder(data, OFFICER_TAG)
        name = dec.text("name")
        recipient = dec.raw("recipient", length=X25519_KEY_LEN)
        dec.finish()
        out = cls(name, recipient)
        check_canonical(out.encode(), data)
        return out

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "recipient": self.recipient.hex()}

    @classmethod
    def from_dict(cls, data: object) -> Officer:
        d = expect_dict(data, "", frozenset({"name", "recipient"}))
        return cls(check_name(d["name"], "name"), from_hex(d["recipient"], "recipient", length=X25519_KEY_LEN))


@dataclass(frozen=True)
class RecoveryConfig:
    """The recovery officers and rules of one configuration ``version`` (1..2^63-1).

    ``officers``: 2..64 :class:`Officer` in index order (officer index = 1-based position), with
    distinct names and recipients; ``quorum`` m: 2 <= m <= k = len(officers) (pieces needed to
    rebuild a share); ``export_quorum``: 1..255 distinct admin signatures a break-glass export
    order needs (checked against the admin set, more than its quorum, by
    :func:`verify_recovery_config_change`); ``drill_period_s``: 0 (no drill required) or at most
    ten years: a successful drill of every key is due that often.
    """

    version: int
    officers: tuple[Officer, ...]
    quorum: int
    export_quorum: int
    drill_period_s: int = 0

    def __post_init__(self) -> None:
        check_int(self.version, "version", 1, MAX_VERSION)
        if not isinstance(self.officers, (tuple, list)) or not 1 <= len(self.officers) <= MAX_OFFICERS:
            raise GovernanceError("officers", f"must be a sequence of 1..{MAX_OFFICERS} Officer")
        names: set[str] = set()
        recipients: dict[bytes, str] = {}
        for i, o in enumerate(self.officers):
            f = f"officers[{i}]"
            if not isinstance(o, Officer):
                raise GovernanceError(f, "must be an Officer")
            if o.name in names:
                raise GovernanceError(f"{f}.name", f"officer {o.name!r} appears twice", subject=o.name)
            names.add(o.name)
            if o.recipient in recipients:
                raise GovernanceError(f"{f}.recipient", f"same recipient as officer {recipients[o.recipient]!r}", subject=o.name)
            recipients[o.recipient] = o.name
        object.__setattr__(self, "officers", tuple(self.officers))
        k = len(self.officers)
        if not isinstance(self.quorum, int) or isinstance(self.quorum, bool) or not 2 <= self.quorum <= k:
            raise GovernanceError("quorum", f"must be an int in 2..{k} (the number of officers), got {quote(self.quorum)}")
        check_int(self.export_quorum, "export_quorum", 1, MAX_EXPORT_QUORUM)
        check_int(self.drill_period_s, "drill_period_s", 0, MAX_DRILL_PERIOD_S)

    def __hash__(self) -> int:
        return hash(self.encode())

    def officer_index(self, name: str) -> int:
        """The 1-based index of officer ``name``; GovernanceError naming ``officer`` if absent."""
        for i, o in enumerate(self.officers, start=1):
            if o.name == name:
                return i
        raise GovernanceError("officer", f"{quote(name)} is not a recovery officer of configuration version {self.version}")

    def officer_by_recipient(self, recipient: bytes) -> int | None:
        """The 1-based index of the officer whose recipient is ``recipient`` (constant-time compare), or None."""
        found: int | None = None
        for i, o in enumerate(self.officers, start=1):
            if isinstance(recipient, bytes) and hmac.compare_digest(o.recipient, recipient):
                found = i
        return found

    def encode(self) -> bytes:
        enc = Encoder(RECOVERY_CONFIG_TAG).uint(self.version).count(len(self.officers))
        for o in self.officers:
            enc.raw(o.encode())
        return enc.uint(self.quorum).uint(self.export_quorum).uint(self.drill_period_s).finish()

    def to_bytes(self) -> bytes:
        return self.encode()

    def digest(self) -> bytes:
        """SHA-256 of :meth:`encode`: what the next change and every backup part name."""
        return sha256(self.encode())

    @classmethod
    def from_bytes(cls, data: bytes) -> RecoveryConfig:
        dec = Decoder(data, RECOVERY_CONFIG_TAG)
        version = dec.uint("version")
        raw = [dec.raw(f"officers[{i}]") for i in range(dec.count("officers", max_count=MAX_OFFICERS))]
        quorum = dec.uint("quorum")
        export_quorum = dec.uint("export_quorum")
        drill = dec.uint("drill_period_s")
        dec.finish()
        officers: list[Officer] = []
        for i, b in enumerate(raw):
            with field_prefix(f"officers[{i}]"):
                officers.append(Officer.from_bytes(b))
        out = cls(version, tuple(officers), quorum, export_quorum, drill)
        check_canonical(out.encode(), data)
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "version": self.version, "officers": [o.to_dict() for o in self.officers], "quorum": self.quorum,
            "export_quorum": self.export_quorum, "drill_period_s": self.drill_period_s,
        }

    @classmethod
    def from_dict(cls, data: object) -> RecoveryConfig:
        d = expect_dict(data, "", frozenset({"version", "officers", "quorum", "export_quorum", "drill_period_s"}))
        items = d["officers"]
        if not isinstance(items, list) or len(items) > MAX_OFFICERS:
            raise GovernanceError("officers", f"must be a list of at most {MAX_OFFICERS} objects")
        officers: list[Officer] = []
        for i, item in enumerate(items):
            with field_prefix(f"officers[{i}]"):
                officers.append(Officer.from_dict(item))
        return cls(
            json_int(d["version"], "version"), tuple(officers), json_int(d["quorum"], "quorum"),
            json_int(d["export_quorum"], "export_quorum"), json_int(d["drill_period_s"], "drill_period_s"),
        )


@dataclass(frozen=True)
class RecoveryConfigChange:
    """Replace the recovery configuration by ``config``: the next link of its chain.

    ``governance_root``: :meth:`AdminSet.digest` of the cluster; ``previous_digest``:
    :meth:`RecoveryConfig.digest` of the configuration replaced (``None`` for the first).
    Admins sign :meth:`encode`.
    """

    governance_root: bytes
    previous_digest: bytes | None
    config: RecoveryConfig

    def __post_init__(self) -> None:
        object.__setattr__(self, "governance_root", check_bytes(self.governance_root, "governance_root", length=DIGEST_LEN))
        if self.previous_digest is not None:
            object.__setattr__(self, "previous_digest", check_bytes(self.previous_digest, "previous_digest", length=DIGEST_LEN))
        if not isinstance(self.config, RecoveryConfig):
            raise GovernanceError("config", "must be a RecoveryConfig")

    def encode(self) -> bytes:
        return (
            Encoder(RECOVERY_CONFIG_CHANGE_TAG).raw(self.governance_root).optional(self.previous_digest)
            .raw(self.config.encode()).finish()
        )

    def to_bytes(self) -> bytes:
        return self.encode()

    def digest(self) -> bytes:
        """SHA-256 of :meth:`encode` (a handle for this exact change)."""
        return sha256(self.encode())

    @property
    def proposal_id(self) -> str:
        """Hex of the first 16 bytes of :meth:`digest` (as other proposals)."""
        return self.digest()[:16].hex()

    @classmethod
    def from_bytes(cls, data: bytes) -> RecoveryConfigChange:
        dec = Decoder(data, RECOVERY_CONFIG_CHANGE_TAG)
        root = dec.raw("governance_root", length=DIGEST_LEN)
        previous = dec.optional("previous_digest", length=DIGEST_LEN)
        config_bytes = dec.raw("config")
        dec.finish()
        with field_prefix("config"):
            config = RecoveryConfig.from_bytes(config_bytes)
        out = cls(root, previous, config)
        check_canonical(out.encode(), data)
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "governance_root": self.governance_root.hex(),
            "previous_digest": None if self.previous_digest is None else self.previous_digest.hex(),
            "config": self.config.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: object) -> RecoveryConfigChange:
        d = expect_dict(data, "", frozenset({"governance_root", "previous_digest", "config"}))
        prev = d["previous_digest"]
        with field_prefix("config"):
            config = RecoveryConfig.from_dict(d["config"])
        return cls(
            from_hex(d["governance_root"], "governance_root", length=DIGEST_LEN),
            None if prev is None else from_hex(prev, "previous_digest", length=DIGEST_LEN), config,
        )


@dataclass(frozen=True)
class SignedRecoveryConfigChange:
    """A recovery configuration change with the admin signatures collected for it."""

    change: RecoveryConfigChange
    signatures: tuple[AdminSignature, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.change, RecoveryConfigChange):
            raise GovernanceError("change", "must be a RecoveryConfigChange")
        object.__setattr__(self, "signatures", check_admin_signature_list(self.signatures))

    def to_bytes(self) -> bytes:
        return encode_signed_change(SIGNED_RECOVERY_CONFIG_CHANGE_TAG, self.change.encode(), self.signatures)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedRecoveryConfigChange:
        change_bytes, sigs = decode_signed_change(data, SIGNED_RECOVERY_CONFIG_CHANGE_TAG)
        with field_prefix("change"):
            change = RecoveryConfigChange.from_bytes(change_bytes)
        out = cls(change, sigs)
        check_canonical(out.to_bytes(), data)
        return out

    def to_dict(self) -> dict[str, object]:
        return {"change": self.change.to_dict(), "signatures": admin_signatures_to_list(self.signatures)}

    @classmethod
    def from_dict(cls, data: object) -> SignedRecoveryConfigChange:
        d = expect_dict(data, "", frozenset({"change", "signatures"}))
        with field_prefix("change"):
            change = RecoveryConfigChange.from_dict(d["change"])
        return cls(change, admin_signatures_from_list(d["signatures"]))


def sign_recovery_config_change(change: RecoveryConfigChange, admin_name: str, private_key: Ed25519PrivateKey) -> AdminSignature:
    """Admin ``admin_name``'s Ed25519 signature over :meth:`RecoveryConfigChange.encode`."""
    if not isinstance(change, RecoveryConfigChange):
        raise GovernanceError("change", "must be a RecoveryConfigChange")
    check_name(admin_name, "admin_name")
    key = check_private_key(private_key, "private_key")
    return AdminSignature(admin_name, key.sign(change.encode()))


def check_recovery_config_signatures(signed: SignedRecoveryConfigChange, admins: AdminSet) -> RecoveryConfig:
    """The configuration of ``signed`` if it names ``admins.digest()``, carries the admin quorum
    and its ``export_quorum`` fits the admin set (``admins.quorum < export_quorum <= len(admins)``);
    the chain (previous digest, version) is not checked (:func:`verify_recovery_config_change`
    does). GovernanceError naming ``governance_root``, ``signatures[i]``/``signatures`` or
    ``config.export_quorum``."""
    if not isinstance(admins, AdminSet):
        raise GovernanceError("admins", "must be an AdminSet")
    if not isinstance(signed, SignedRecoveryConfigChange):
        raise GovernanceError("signed", "must be a SignedRecoveryConfigChange")
    change = signed.change
    if not hmac.compare_digest(change.governance_root, admins.digest()):
        raise GovernanceError("governance_root", "names another governance root (a change made for another cluster or admin set)")
    require_admin_quorum(admins, change.encode(), signed.signatures)
    n = len(admins.admins)
    eq = change.config.export_quorum
    if not admins.quorum < eq <= n:
        raise GovernanceError(
            "config.export_quorum", f"is {eq}: must be more than the admin quorum ({admins.quorum}) and at most the number of admins ({n})"
        )
    return change.config


def verify_recovery_config_change(
    prev: RecoveryConfig | None, signed: SignedRecoveryConfigChange, admins: AdminSet
) -> RecoveryConfig:
    """The new configuration if ``signed`` may replace ``prev`` (``None``: none yet); else
    GovernanceError naming the field. Checks :func:`check_recovery_config_signatures`, then
    ``previous_digest`` (absent iff ``prev`` is None, else ``prev.digest()``) and
    ``config.version`` (``prev.version + 1``; 1 first)."""
    if prev is not None and not isinstance(prev, RecoveryConfig):
        raise GovernanceError("prev", "must be a RecoveryConfig or None")
    config = check_recovery_config_signatures(signed, admins)
    change = signed.change
    if prev is None:
        if change.previous_digest is not None:
            raise GovernanceError("previous_digest", "must be absent: there is no recovery configuration yet")
        if config.version != 1:
            raise GovernanceError("config.version", f"must be 1, got {config.version}")
        return config
    if change.previous_digest is None:
        raise GovernanceError("previous_digest", "missing: a recovery configuration already exists")
    if not hmac.compare_digest(change.previous_digest, prev.digest()):
        raise GovernanceError(
            "previous_digest", "is not the digest of the current recovery configuration (stale, forked or replayed change)"
        )
    if config.version != prev.version + 1:
        raise GovernanceError("config.version", f"must be {prev.version + 1}, got {config.version}")
    return config


def verify_recovery_config_history(admins: AdminSet, history: Sequence[SignedRecoveryConfigChange]) -> RecoveryConfig | None:
    """The configuration at the end of ``history`` (None if it is empty), each step checked by
    :func:`verify_recovery_config_change`; errors are prefixed ``history[i].``."""
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise GovernanceError("history", "must be a sequence of SignedRecoveryConfigChange")
    current: RecoveryConfig | None = None
    for i, signed in enumerate(history):
        with field_prefix(f"history[{i}]"):
            current = verify_recovery_config_change(current, signed, admins)
    return current


# --- the key's public record, pieces and parts ------------------------------------------------


ED25519_ELEMENT_LEN = 32


def check_element(value: object, field: str, scheme: str | None = None) -> bytes:
    """A group element encoding of a key of ``scheme``: a 33-byte compressed SEC1 point
    (``ecdsa-secp256k1``, ``schnorr-secp256k1-bip340``) or a 32-byte Ed25519 point (``ed25519``);
    with ``scheme`` None either shape. The curve checks are :mod:`crypto_core`'s."""
    ed = scheme == SCHEME_ED25519 or (
        scheme is None and isinstance(value, (bytes, bytearray)) and len(value) == ED25519_ELEMENT_LEN
    )
    return check_bytes(value, field, length=ED25519_ELEMENT_LEN) if ed else check_compressed_point(value, field)


def _check_scheme(value: object, field: str = "scheme") -> str:
    if not isinstance(value, str) or value not in SCHEMES:
        raise GovernanceError(field, f"must be one of {', '.join(SCHEMES)}")
    return value


def _check_label(value: object, field: str = "label") -> str:
    label = check_text(value, field, MAX_LABEL_BYTES)
    if len(label.encode("utf-8")) > MAX_LABEL_BYTES:
        raise GovernanceError(field, f"longer than {MAX_LABEL_BYTES} UTF-8 bytes")
    return label


@dataclass(frozen=True)
class BackupKey:
    """The public record of key ``key_id`` at ``epoch`` that a bundle backs up.

    ``public_key`` 33-byte compressed SEC1; ``chain_code`` 32 bytes; ``label`` (text, at most 256
    UTF-8 bytes, may be empty); ``threshold`` 2..n; ``committee`` the roster indices of the key's
    n holders in increasing order (position = share index); ``public_shares`` S_1..S_n, 33 bytes
    each (S_i = x_i*G of the node at position i). On-curve and interpolation checks are
    ``crypto_core.feldman``'s.

    ``scheme`` (issue 16): ``ecdsa-secp256k1`` (the default; encoded with the version-1 tag, byte
    for byte as before) or a FROST scheme, ``ed25519`` (public key and shares 32-byte Ed25519
    points) or ``schnorr-secp256k1-bip340`` (33-byte compressed, the untweaked group key), whose
    record is encoded with :data:`BACKUP_KEY_V2_TAG` and the scheme after the key id; a FROST key
    has no chain code (``b""``). Group checks are ``crypto_core.frost``'s.
    """

    key_id: bytes
    public_key: bytes
    chain_code: bytes
    label: str
    threshold: int
    epoch: int
    committee: tuple[int, ...]
    public_shares: tuple[bytes, ...]
    scheme: str = SCHEME_ECDSA

    def __post_init__(self) -> None:
        scheme = _check_scheme(self.scheme)
        object.__setattr__(self, "key_id", check_bytes(self.key_id, "key_id", length=ID_LEN))
        object.__setattr__(self, "public_key", check_element(self.public_key, "public_key", scheme))
        chain_code_len = ID_LEN if scheme == SCHEME_ECDSA else 0  # a FROST key has no chain code
        object.__setattr__(self, "chain_code", check_bytes(self.chain_code, "chain_code", length=chain_code_len))
        _check_label(self.label)
        committee = check_committee(self.committee, "committee")
        object.__setattr__(self, "committee", committee)
        check_int(self.threshold, "threshold", 2, len(committee))
        check_int(self.epoch, "epoch", 0, MAX_EPOCH)
        if not isinstance(self.public_shares, (tuple, list)) or len(self.public_shares) != len(committee):
            raise GovernanceError("public_shares", f"must be {len(committee)} public shares (one per committee member)")
        shares = tuple(check_element(s, f"public_shares[{i}]", scheme) for i, s in enumerate(self.public_shares))
        object.__setattr__(self, "public_shares", shares)

    @property
    def is_frost(self) -> bool:
        """Whether this is the record of a FROST key (issue 16; encoded with the v2 tag)."""
        return self.scheme != SCHEME_ECDSA

    def share_index(self, node: int) -> int:
        """``node``'s 1-based share index; GovernanceError naming ``committee`` if it holds none."""
        if node not in self.committee:
            raise GovernanceError("committee", f"node {node} holds no share of this key")
        return self.committee.index(node) + 1

    def encode(self) -> bytes:
        if self.is_frost:  # v2: the scheme after the key id; an ECDSA record is v1, as before issue 16
            enc = Encoder(BACKUP_KEY_V2_TAG).raw(self.key_id).text(self.scheme)
        else:
            enc = Encoder(BACKUP_KEY_TAG).raw(self.key_id)
        enc.raw(self.public_key).raw(self.chain_code).text(self.label).uint(self.threshold).uint(self.epoch)
        enc.count(len(self.committee))
        for i in self.committee:
            enc.uint(i)
        enc.count(len(self.public_shares))
        for s in self.public_shares:
            enc.raw(s)
        return enc.finish()

    def to_bytes(self) -> bytes:
        return self.encode()

    def digest(self) -> bytes:
        """SHA-256 of :meth:`encode` (every :class:`BackupPart` names it)."""
        return sha256(self.encode())

    @classmethod
    def from_bytes(cls, data: bytes) -> BackupKey:
        v2 = _has_tag(data, BACKUP_KEY_V2_TAG)
        dec = Decoder(data, BACKUP_KEY_V2_TAG if v2 else BACKUP_KEY_TAG)
        key_id = dec.raw("key_id", length=ID_LEN)
        scheme = SCHEME_ECDSA
        if v2:
            scheme = _check_scheme(dec.text("scheme"))
            if scheme == SCHEME_ECDSA:
                raise GovernanceError("scheme", "an ecdsa-secp256k1 key record is encoded with the v1 tag")
        element_len = ED25519_ELEMENT_LEN if scheme == SCHEME_ED25519 else PUBLIC_KEY_LEN
        pk = dec.raw("public_key", length=element_len)
        cc = dec.raw("chain_code", length=0 if v2 else ID_LEN)
        label = dec.text("label")
        t = dec.uint("threshold")
        epoch = dec.uint("epoch")
        committee = tuple(dec.uint(f"committee[{i}]") for i in range(dec.count("committee", max_count=MAX_INDEX)))
        shares = tuple(
            dec.raw(f"public_shares[{i}]", length=element_len) for i in range(dec.count("public_shares", max_count=MAX_INDEX))
        )
        dec.finish()
        out = cls(key_id, pk, cc, label, t, epoch, committee, shares, scheme)
        check_canonical(out.encode(), data)
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "key_id": self.key_id.hex(), "public_key": self.public_key.hex(), "chain_code": self.chain_code.hex(),
            "label": self.label, "threshold": self.threshold, "epoch": self.epoch, "committee": list(self.committee),
            "public_shares": [s.hex() for s in self.public_shares],
        } | ({"scheme": self.scheme} if self.is_frost else {})

    @classmethod
    def from_dict(cls, data: object) -> BackupKey:
        keys = frozenset({"key_id", "public_key", "chain_code", "label", "threshold", "epoch", "committee", "public_shares"})
        frost = isinstance(data, dict) and "scheme" in data  # an ECDSA record's dict has no scheme, as before issue 16
        d = expect_dict(data, "", keys | ({"scheme"} if frost else set()))
        scheme = _check_scheme(d["scheme"]) if frost else SCHEME_ECDSA
        if frost and scheme == SCHEME_ECDSA:
            raise GovernanceError("scheme", "an ecdsa-secp256k1 key record has no scheme field")
        element_len = ED25519_ELEMENT_LEN if scheme == SCHEME_ED25519 else PUBLIC_KEY_LEN
        committee, shares = d["committee"], d["public_shares"]
        if not isinstance(committee, list) or len(committee) > MAX_INDEX:
            raise GovernanceError("committee", f"must be a list of at most {MAX_INDEX} roster indices")
        if not isinstance(shares, list) or len(shares) > MAX_INDEX:
            raise GovernanceError("public_shares", f"must be a list of at most {MAX_INDEX} hex strings")
        return cls(
            from_hex(d["key_id"], "key_id", length=ID_LEN), from_hex(d["public_key"], "public_key", length=element_len),
            from_hex(d["chain_code"], "chain_code", length=0 if frost else ID_LEN), _check_label(d["label"]),
            json_int(d["threshold"], "threshold"), json_int(d["epoch"], "epoch"),
            tuple(json_int(x, f"committee[{i}]") for i, x in enumerate(committee)),
            tuple(from_hex(x, f"public_shares[{i}]", length=element_len) for i, x in enumerate(shares)),
            scheme,
        )


def _check_scalar(value: object, field: str = "value") -> bytes:
    # Never quote the value: it is a secret scalar.
    if not isinstance(value, (bytes, bytearray)) or len(value) != SCALAR_LEN:
        raise GovernanceError(field, f"must be {SCALAR_LEN} bytes")
    return bytes(value)


@dataclass(frozen=True)
class BackupPiece:
    """The plaintext of officer ``officer_index``'s age file in a backup part: piece f(officer_index)
    of the Shamir split of the share at ``share_index`` of key ``key_id`` at ``epoch``, for
    recovery configuration ``config_version``. ``value``: the 32-byte big-endian scalar (secret:
    not in ``repr``)."""

    key_id: bytes
    epoch: int
    share_index: int
    officer_index: int
    config_version: int
    value: bytes = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_id", check_bytes(self.key_id, "key_id", length=ID_LEN))
        check_int(self.epoch, "epoch", 0, MAX_EPOCH)
        check_int(self.share_index, "share_index", 1, MAX_INDEX)
        check_int(self.officer_index, "officer_index", 1, MAX_OFFICERS)
        check_int(self.config_version, "config_version", 1, MAX_VERSION)
        object.__setattr__(self, "value", _check_scalar(self.value))

    def encode(self) -> bytes:
        return (
            Encoder(BACKUP_PIECE_TAG).raw(self.key_id).uint(self.epoch).uint(self.share_index).uint(self.officer_index)
            .uint(self.config_version).raw(self.value).finish()
        )

    def to_bytes(self) -> bytes:
        return self.encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> BackupPiece:
        dec = Decoder(data, BACKUP_PIECE_TAG, what="piece")
        key_id = dec.raw("key_id", length=ID_LEN)
        epoch = dec.uint("epoch")
        share_index = dec.uint("share_index")
        officer_index = dec.uint("officer_index")
        config_version = dec.uint("config_version")
        value = dec.raw("value", length=SCALAR_LEN)
        dec.finish()
        out = cls(key_id, epoch, share_index, officer_index, config_version, value)
        check_canonical(out.encode(), data)
        return out


def check_piece_file(value: object, field: str) -> bytes:
    """One officer's age file in a part: 1..2048 bytes starting ``age-encryption.org/v1\\n``
    (the full structure check is ``mpcnet.common.agekeys.check_age_file``)."""
    if not isinstance(value, (bytes, bytearray)):
        raise GovernanceError(field, "must be bytes")
    if not len(AGE_HEADER) < len(value) <= MAX_PIECE_FILE:
        raise GovernanceError(field, f"must be an age file of at most {MAX_PIECE_FILE} bytes, got {len(value)}")
    if not bytes(value).startswith(AGE_HEADER):
        raise GovernanceError(field, "is not a binary age file (no age-encryption.org/v1 header)")
    return bytes(value)


@dataclass(frozen=True)
class BackupPart:
    """Node ``node``'s backup of its share (position ``share_index``) of key ``key_id`` at ``epoch``.

    ``key_digest``: :meth:`BackupKey.digest` of the key's public record; ``roster_version``: the
    roster version whose entry for ``node`` holds the identity key that signs the part;
    ``config_version``/``config_digest``: the recovery configuration (:meth:`RecoveryConfig.digest`)
    the part was made for; ``commitments``: the m = quorum Feldman commitments C_0..C_{m-1}, 33
    bytes each (C_0 is the node's public share; issue 16: 32-byte points for an ed25519 key, one
    length for all, the group of the key record); ``pieces``: k = len(officers) binary age files
    (<= 2048 bytes each), piece j to officer j; ``created_ms``: the node's clock (ms since the epoch).
    """

    governance_root: bytes
    key_digest: bytes
    key_id: bytes
    epoch: int
    share_index: int
    node: int
    roster_version: int
    config_version: int
    config_digest: bytes
    commitments: tuple[bytes, ...]
    pieces: tuple[bytes, ...]
    created_ms: int

    def __post_init__(self) -> None:
        for name in ("governance_root", "key_digest", "key_id", "config_digest"):
            object.__setattr__(self, name, check_bytes(getattr(self, name), name, length=ID_LEN))
        check_int(self.epoch, "epoch", 0, MAX_EPOCH)
        check_int(self.share_index, "share_index", 1, MAX_INDEX)
        check_int(self.node, "node", 1, MAX_INDEX)
        check_int(self.roster_version, "roster_version", 1, MAX_VERSION)
        check_int(self.config_version, "config_version", 1, MAX_VERSION)
        if not isinstance(self.commitments, (tuple, list)) or not 2 <= len(self.commitments) <= MAX_OFFICERS:
            raise GovernanceError("commitments", f"must be 2..{MAX_OFFICERS} commitments (the recovery quorum)")
        commitments = tuple(check_element(c, f"commitments[{i}]") for i, c in enumerate(self.commitments))
        for i, c in enumerate(commitments):
            if len(c) != len(commitments[0]):
                raise GovernanceError(f"commitments[{i}]", "is of another group than commitments[0] (one length for all)")
        object.__setattr__(self, "commitments", commitments)
        if not isinstance(self.pieces, (tuple, list)) or not len(commitments) <= len(self.pieces) <= MAX_OFFICERS:
            raise GovernanceError("pieces", f"must be {len(commitments)}..{MAX_OFFICERS} age files (one per officer)")
        object.__setattr__(self, "pieces", tuple(check_piece_file(p, f"pieces[{i}]") for i, p in enumerate(self.pieces)))
        check_int(self.created_ms, "created_ms", 0, MAX_MS)

    def encode(self) -> bytes:
        enc = (
            Encoder(BACKUP_PART_TAG).raw(self.governance_root).raw(self.key_digest).raw(self.key_id).uint(self.epoch)
            .uint(self.share_index).uint(self.node).uint(self.roster_version).uint(self.config_version)
            .raw(self.config_digest).count(len(self.commitments))
        )
        for c in self.commitments:
            enc.raw(c)
        enc.count(len(self.pieces))
        for p in self.pieces:
            enc.raw(p)
        return enc.uint(self.created_ms).finish()

    def to_bytes(self) -> bytes:
        return self.encode()

    def digest(self) -> bytes:
        return sha256(self.encode())

    @classmethod
    def from_bytes(cls, data: bytes) -> BackupPart:
        dec = Decoder(data, BACKUP_PART_TAG, what="part")
        root = dec.raw("governance_root", length=DIGEST_LEN)
        key_digest = dec.raw("key_digest", length=DIGEST_LEN)
        key_id = dec.raw("key_id", length=ID_LEN)
        epoch = dec.uint("epoch")
        share_index = dec.uint("share_index")
        node = dec.uint("node")
        roster_version = dec.uint("roster_version")
        config_version = dec.uint("config_version")
        config_digest = dec.raw("config_digest", length=DIGEST_LEN)
        commitments = tuple(
            dec.raw(f"commitments[{i}]") for i in range(dec.count("commitments", max_count=MAX_OFFICERS))
        )
        pieces = tuple(dec.raw(f"pieces[{i}]") for i in range(dec.count("pieces", max_count=MAX_OFFICERS)))
        created_ms = dec.uint("created_ms")
        dec.finish()
        out = cls(root, key_digest, key_id, epoch, share_index, node, roster_version, config_version, config_digest,
                  commitments, pieces, created_ms)
        check_canonical(out.encode(), data)
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "governance_root": self.governance_root.hex(), "key_digest": self.key_digest.hex(), "key_id": self.key_id.hex(),
            "epoch": self.epoch, "share_index": self.share_index, "node": self.node, "roster_version": self.roster_version,
            "config_version": self.config_version, "config_digest": self.config_digest.hex(),
            "commitments": [c.hex() for c in self.commitments], "pieces": [p.hex() for p in self.pieces],
            "created_ms": self.created_ms,
        }


@dataclass(frozen=True)
class SignedBackupPart:
    """A :class:`BackupPart` with ``signature``: the node's Ed25519 identity signature over
    :meth:`BackupPart.encode`."""

    part: BackupPart
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.part, BackupPart):
            raise GovernanceError("part", "must be a BackupPart")
        object.__setattr__(self, "signature", check_bytes(self.signature, "signature", length=SIGNATURE_LEN))

    def to_bytes(self) -> bytes:
        return _signed_encoding(SIGNED_BACKUP_PART_TAG, self.part.encode(), self.signature)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedBackupPart:
        msg, signature = _signed_decoding(data, SIGNED_BACKUP_PART_TAG, "signed part")
        with field_prefix("part"):
            part = BackupPart.from_bytes(msg)
        out = cls(part, signature)
        check_canonical(out.to_bytes(), data)
        return out

    def verify(self, identity_public: bytes) -> bool:
        """True iff :attr:`signature` verifies under ``identity_public`` (raw Ed25519)."""
        return ed25519_verify(identity_public, self.signature, self.part.encode())


def sign_backup_part(part: BackupPart, key: Ed25519PrivateKey) -> SignedBackupPart:
    """``part`` signed by ``key`` (the node's identity key)."""
    if not isinstance(part, BackupPart):
        raise GovernanceError("part", "must be a BackupPart")
    k = check_private_key(key, "key")
    return SignedBackupPart(part, k.sign(part.encode()))


# --- the bundle ------------------------------------------------------------------------------


def _rename_history(e: GovernanceError) -> GovernanceError:
    name = "roster_" + e.field if e.field.startswith("history") else f"roster_history.{e.field}"
    return GovernanceError(name, e.reason, subject=e.subject)


@dataclass(frozen=True)
class BackupBundle:
    """Every backup part of one key at one epoch: the file ``mpc backup export`` writes.

    ``format_version`` (1); ``governance_root``; ``key`` the key's public record; ``config`` the
    signed change that made the recovery configuration the parts were made for;
    ``roster_history`` the roster chain from version 1 up to (at least) the newest roster version
    a part names; ``parts`` one :class:`SignedBackupPart` per committee position, stored sorted by
    share index; ``created_ms`` when the coordinator assembled it. The file is
    :data:`BUNDLE_MAGIC` + :meth:`encode` (at most 16 MiB); :meth:`digest` is its SHA-256.
    """

    format_version: int
    governance_root: bytes
    key: BackupKey
    config: SignedRecoveryConfigChange
    roster_history: tuple[SignedRosterChange, ...]
    parts: tuple[SignedBackupPart, ...]
    created_ms: int

    def __post_init__(self) -> None:
        if self.format_version != BUNDLE_FORMAT_VERSION or isinstance(self.format_version, bool):
            raise GovernanceError(
                "format_version", f"unknown bundle format version {quote(self.format_version)} (this software reads 1)"
            )
        object.__setattr__(self, "governance_root", check_bytes(self.governance_root, "governance_root", length=DIGEST_LEN))
        if not isinstance(self.key, BackupKey):
            raise GovernanceError("key", "must be a BackupKey")
        if not isinstance(self.config, SignedRecoveryConfigChange):
            raise GovernanceError("config", "must be a SignedRecoveryConfigChange")
        if not isinstance(self.roster_history, (tuple, list)) or not 1 <= len(self.roster_history) <= MAX_ROSTER_HISTORY:
            raise GovernanceError("roster_history", f"must be 1..{MAX_ROSTER_HISTORY} SignedRosterChange")
        for i, h in enumerate(self.roster_history):
            if not isinstance(h, SignedRosterChange):
                raise GovernanceError(f"roster_history[{i}]", "must be a SignedRosterChange")
        object.__setattr__(self, "roster_history", tuple(self.roster_history))
        if not isinstance(self.parts, (tuple, list)) or not 1 <= len(self.parts) <= MAX_INDEX:
            raise GovernanceError("parts", f"must be 1..{MAX_INDEX} SignedBackupPart")
        for i, p in enumerate(self.parts):
            if not isinstance(p, SignedBackupPart):
                raise GovernanceError(f"parts[{i}]", "must be a SignedBackupPart")
        object.__setattr__(self, "parts", tuple(sorted(self.parts, key=lambda p: p.part.share_index)))
        check_int(self.created_ms, "created_ms", 0, MAX_MS)

    def encode(self) -> bytes:
        enc = (
            Encoder(BACKUP_BUNDLE_TAG).uint(self.format_version).raw(self.governance_root).raw(self.key.encode())
            .raw(self.config.to_bytes()).count(len(self.roster_history))
        )
        for h in self.roster_history:
            enc.raw(h.to_bytes())
        enc.count(len(self.parts))
        for p in self.parts:
            enc.raw(p.to_bytes())
        return enc.uint(self.created_ms).finish()

    def to_file(self) -> bytes:
        """:data:`BUNDLE_MAGIC` followed by :meth:`encode`."""
        return BUNDLE_MAGIC + self.encode()

    def digest(self) -> bytes:
        """SHA-256 of :meth:`to_file` (what orders and piece deliveries name)."""
        return sha256(self.to_file())

    @classmethod
    def from_file(cls, data: bytes) -> BackupBundle:
        """Strict inverse of :meth:`to_file`; GovernanceError naming ``bundle`` (not a bundle file,
        too large), ``format_version`` (a version this software does not read) or the field."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise GovernanceError("bundle", "must be bytes")
        data = bytes(data)
        if len(data) > MAX_BUNDLE_BYTES:
            raise GovernanceError("bundle", f"longer than {MAX_BUNDLE_BYTES} bytes")
        if not data.startswith(BUNDLE_MAGIC):
            raise GovernanceError("bundle", "is not an mpcnet backup bundle file (no MPCNET-BACKUP-BUNDLE header)")
        body = data[len(BUNDLE_MAGIC):]
        dec = Decoder(body, BACKUP_BUNDLE_TAG, what="bundle", max_len=MAX_BUNDLE_BYTES)
        version = dec.uint("format_version")
        if version != BUNDLE_FORMAT_VERSION:
            raise GovernanceError(
                "format_version", f"unknown bundle format version {version} (this software reads {BUNDLE_FORMAT_VERSION})"
            )
        root = dec.raw("governance_root", length=DIGEST_LEN)
        key_bytes = dec.raw("key")
        config_bytes = dec.raw("config")
        history_bytes = [dec.raw(f"roster_history[{i}]") for i in range(dec.count("roster_history", max_count=MAX_ROSTER_HISTORY))]
        part_bytes = [dec.raw(f"parts[{i}]") for i in range(dec.count("parts", max_count=MAX_INDEX))]
        created_ms = dec.uint("created_ms")
        dec.finish()
        with field_prefix("key"):
            key = BackupKey.from_bytes(key_bytes)
        with field_prefix("config"):
            config = SignedRecoveryConfigChange.from_bytes(config_bytes)
        history: list[SignedRosterChange] = []
        for i, b in enumerate(history_bytes):
            with field_prefix(f"roster_history[{i}]"):
                history.append(SignedRosterChange.from_bytes(b))
        parts: list[SignedBackupPart] = []
        for i, b in enumerate(part_bytes):
            with field_prefix(f"parts[{i}]"):
                parts.append(SignedBackupPart.from_bytes(b))
        out = cls(version, root, key, config, tuple(history), tuple(parts), created_ms)
        check_canonical(out.encode(), body)
        return out

    def check_structure(self, admins: AdminSet) -> RecoveryConfig:
        """Every check of the bundle that needs no elliptic-curve math, against the verifier's own
        ``admins``; returns the recovery configuration the parts were made for.

        Checks: the governance root; the configuration change's admin quorum and export quorum
        (:func:`check_recovery_config_signatures`; its chain is the verifier's own concern); the
        roster history (:func:`~governance.roster.verify_roster_history`); each part: its node is
        the committee member at its share index, active in the roster at the part's
        ``roster_version``, whose identity key verifies its signature; root, key id, epoch, key
        digest, configuration version and digest as in the bundle; ``commitments[0]`` equal to
        the public share at its index; ``quorum`` commitments and one piece per officer; one part
        per share index 1..n. GovernanceError naming ``parts[i].<field>`` and the node
        (``subject`` ``"node N"``), ``parts`` (a missing share index), ``config.…`` or
        ``roster_history[i].…``.
        """
        if not isinstance(admins, AdminSet):
            raise GovernanceError("admins", "must be an AdminSet")
        root = admins.digest()
        if not hmac.compare_digest(self.governance_root, root):
            raise GovernanceError("governance_root", "names another governance root (a bundle of another cluster or admin set)")
        with field_prefix("config"):
            config = check_recovery_config_signatures(self.config, admins)
        try:
            verify_roster_history(admins, self.roster_history)
        except GovernanceError as e:
            raise _rename_history(e) from None
        rosters: dict[int, Roster] = {h.change.new_roster.version: h.change.new_roster for h in self.roster_history}
        key = self.key
        n = len(key.committee)
        key_digest = key.digest()
        config_digest = config.digest()
        seen: set[int] = set()
        for i, signed in enumerate(self.parts):
            p = signed.part

            def bad(name: str, reason: str, *, node: int = p.node, i: int = i) -> GovernanceError:
                return GovernanceError(f"parts[{i}].{name}", f"{reason} (part of node {node})", subject=_node(node))

            if not 1 <= p.share_index <= n:
                raise bad("share_index", f"is {p.share_index}: the key's committee has {n} members")
            if p.share_index in seen:
                raise bad("share_index", f"share index {p.share_index} has two parts")
            seen.add(p.share_index)
            expected = key.committee[p.share_index - 1]
            if p.node != expected:
                raise bad("node", f"share index {p.share_index} belongs to node {expected}, the part names node {p.node}")
            roster = rosters.get(p.roster_version)
            if roster is None:
                raise bad("roster_version", f"roster version {p.roster_version} is not in the bundle's roster history")
            entry = roster.entry(p.node)
            if entry is None or not entry.active:
                raise bad("node", f"node {p.node} is not an active node of roster version {p.roster_version}")
            if not signed.verify(entry.identity_key):
                raise bad("signature", f"does not verify under node {p.node}'s identity key (roster version {p.roster_version})")
            if not hmac.compare_digest(p.governance_root, root):
                raise bad("governance_root", "names another governance root")
            if p.key_id != key.key_id:
                raise bad("key_id", "is for another key")
            if p.epoch != key.epoch:
                raise bad("epoch", f"is {p.epoch}, the bundle backs up epoch {key.epoch}")
            if not hmac.compare_digest(p.key_digest, key_digest):
                if all(hmac.compare_digest(q.part.key_digest, p.key_digest) for q in self.parts):
                    # every node's part names one other record: the record was altered after them (no node at fault)
                    raise GovernanceError("key", "is not the key record every node's part names (altered after the parts were made)")
                raise bad("key_digest", "is not the digest of the bundle's key record")
            if p.config_version != config.version:
                raise bad("config_version", f"is {p.config_version}, the bundle's recovery configuration is version {config.version}")
            if not hmac.compare_digest(p.config_digest, config_digest):
                raise bad("config_digest", "is not the digest of the bundle's recovery configuration")
            if len(p.commitments) != config.quorum:
                raise bad("commitments", f"{len(p.commitments)} commitments, the recovery quorum is {config.quorum}")
            if len(p.pieces) != len(config.officers):
                raise bad("pieces", f"{len(p.pieces)} pieces, the configuration has {len(config.officers)} officers")
            if p.commitments[0] != key.public_shares[p.share_index - 1]:
                raise bad("commitments[0]", f"is not node {p.node}'s public share (share index {p.share_index})")
        missing = [s for s in range(1, n + 1) if s not in seen]
        if missing:
            node = key.committee[missing[0] - 1]
            raise GovernanceError("parts", f"no part for share index {missing[0]} (node {node})", subject=_node(node))
        return config


# --- ceremonies: deliveries and orders -------------------------------------------------------


class PiecePurpose(enum.IntEnum):
    """Why an officer re-encrypted a piece (:class:`PieceDelivery`); encoded as a ``uint``."""

    DRILL = 1
    RESTORE = 2
    EXPORT = 3


def _check_enum(value: object, kind: type[enum.IntEnum], field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GovernanceError(field, f"must be a {kind.__name__}")
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(f"{m.value} ({m.name.lower()})" for m in kind)
        raise GovernanceError(field, f"must be one of {names}, got {value}") from None


@dataclass(frozen=True)
class PieceDelivery:
    """What an officer's age file to a ceremony's target decrypts to: her piece (``value``, the
    32-byte scalar; secret, not in ``repr``) of share ``share_index`` of ``key_id`` at ``epoch``,
    bound to ceremony ``ceremony_id`` (16 bytes), ``purpose``, her ``officer_index`` and the
    ``bundle_digest`` (:meth:`BackupBundle.digest`) the piece came from."""

    ceremony_id: bytes
    purpose: PiecePurpose
    key_id: bytes
    epoch: int
    share_index: int
    officer_index: int
    bundle_digest: bytes
    value: bytes = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ceremony_id", check_bytes(self.ceremony_id, "ceremony_id", length=CEREMONY_ID_LEN))
        object.__setattr__(self, "purpose", _check_enum(self.purpose, PiecePurpose, "purpose"))
        object.__setattr__(self, "key_id", check_bytes(self.key_id, "key_id", length=ID_LEN))
        check_int(self.epoch, "epoch", 0, MAX_EPOCH)
        check_int(self.share_index, "share_index", 1, MAX_INDEX)
        check_int(self.officer_index, "officer_index", 1, MAX_OFFICERS)
        object.__setattr__(self, "bundle_digest", check_bytes(self.bundle_digest, "bundle_digest", length=DIGEST_LEN))
        object.__setattr__(self, "value", _check_scalar(self.value))

    def encode(self) -> bytes:
        return (
            Encoder(PIECE_DELIVERY_TAG).raw(self.ceremony_id).uint(int(self.purpose)).raw(self.key_id).uint(self.epoch)
            .uint(self.share_index).uint(self.officer_index).raw(self.bundle_digest).raw(self.value).finish()
        )

    def to_bytes(self) -> bytes:
        return self.encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> PieceDelivery:
        dec = Decoder(data, PIECE_DELIVERY_TAG, what="delivery")
        ceremony_id = dec.raw("ceremony_id", length=CEREMONY_ID_LEN)
        purpose = PiecePurpose(_check_enum(dec.uint("purpose"), PiecePurpose, "purpose"))
        key_id = dec.raw("key_id", length=ID_LEN)
        epoch = dec.uint("epoch")
        share_index = dec.uint("share_index")
        officer_index = dec.uint("officer_index")
        bundle_digest = dec.raw("bundle_digest", length=DIGEST_LEN)
        value = dec.raw("value", length=SCALAR_LEN)
        dec.finish()
        out = cls(ceremony_id, purpose, key_id, epoch, share_index, officer_index, bundle_digest, value)
        check_canonical(out.encode(), data)
        return out


class RecoveryOrderKind(enum.IntEnum):
    """What a :class:`RecoveryOrder` orders; encoded as a ``uint``."""

    RESTORE = 1
    EXPORT = 2


@dataclass(frozen=True)
class RecoveryTarget:
    """Share ``share_index`` (1..255) is rebuilt on roster node ``node`` (1..255; 0 for an export,
    whose target is the order's off-line recipient)."""

    share_index: int
    node: int

    def __post_init__(self) -> None:
        check_int(self.share_index, "share_index", 1, MAX_INDEX)
        check_int(self.node, "node", 0, MAX_INDEX)

    def to_dict(self) -> dict[str, object]:
        return {"share_index": self.share_index, "node": self.node}

    @classmethod
    def from_dict(cls, data: object) -> RecoveryTarget:
        d = expect_dict(data, "", frozenset({"share_index", "node"}))
        return cls(json_int(d["share_index"], "share_index"), json_int(d["node"], "node"))


@dataclass(frozen=True)
class RecoveryOrder:
    """An admin order to rebuild shares of key ``key_id`` at ``epoch`` from the backup bundle
    ``bundle_digest`` (made for recovery configuration ``config_version``).

    ``order_id``: 16 random bytes. ``targets``: 1..255 :class:`RecoveryTarget`, distinct share
    indices in increasing order. **RESTORE**: each target's ``node`` (distinct, 1..255) must be
    the committee member at that share index: ``follow_up.old_committee[share_index-1] == node``;
    ``export_recipient`` is ``b""``; ``follow_up`` (required) is the refresh or reshare that runs
    after the restore, of the same governance root, key id, public key, chain code, with
    ``old_epoch == epoch`` and ``roster_version == roster_version`` (the roster, after the lost
    nodes were replaced, that the targets were checked against). **EXPORT**: nodes are 0,
    ``export_recipient`` is the off-line machine's 32-byte X25519 age recipient, no follow-up.
    ``reason``: non-empty text (:func:`governance.text.check_text`, at most 200 characters).
    ``expires_ms``: when the order stops being valid (ms since the Unix epoch, 1..2**63-1):
    :func:`verify_recovery_order` given a clock refuses it at or after that instant.
    ``scheme`` (issue 16): the key's scheme; a FROST key's order (``public_key`` its group key
    encoding, ``chain_code`` empty, the follow-up of the same scheme) encodes under
    :data:`RECOVERY_ORDER_V2_TAG` with the scheme appended; an ECDSA order exactly as before.
    """

    governance_root: bytes
    order_id: bytes
    kind: RecoveryOrderKind
    key_id: bytes
    public_key: bytes
    chain_code: bytes
    epoch: int
    bundle_digest: bytes
    config_version: int
    roster_version: int
    targets: tuple[RecoveryTarget, ...]
    export_recipient: bytes
    follow_up: KeyOperation | None
    reason: str
    expires_ms: int
    scheme: str = SCHEME_ECDSA

    def __post_init__(self) -> None:
        object.__setattr__(self, "governance_root", check_bytes(self.governance_root, "governance_root", length=DIGEST_LEN))
        object.__setattr__(self, "order_id", check_bytes(self.order_id, "order_id", length=ORDER_ID_LEN))
        kind = RecoveryOrderKind(_check_enum(self.kind, RecoveryOrderKind, "kind"))
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "key_id", check_bytes(self.key_id, "key_id", length=ID_LEN))
        scheme = _check_scheme(self.scheme)
        object.__setattr__(self, "public_key", check_element(self.public_key, "public_key", scheme))
        chain_code_len = ID_LEN if scheme == SCHEME_ECDSA else 0  # a FROST key has no chain code
        object.__setattr__(self, "chain_code", check_bytes(self.chain_code, "chain_code", length=chain_code_len))
        check_int(self.epoch, "epoch", 0, MAX_EPOCH)
        object.__setattr__(self, "bundle_digest", check_bytes(self.bundle_digest, "bundle_digest", length=DIGEST_LEN))
        check_int(self.config_version, "config_version", 1, MAX_VERSION)
        check_int(self.roster_version, "roster_version", 1, MAX_VERSION)
        if not isinstance(self.targets, (tuple, list)) or not 1 <= len(self.targets) <= MAX_INDEX:
            raise GovernanceError("targets", f"must be a sequence of 1..{MAX_INDEX} RecoveryTarget")
        for i, t in enumerate(self.targets):
            if not isinstance(t, RecoveryTarget):
                raise GovernanceError(f"targets[{i}]", "must be a RecoveryTarget")
            if i and not t.share_index > self.targets[i - 1].share_index:
                raise GovernanceError(f"targets[{i}].share_index", "share indices must be distinct and in increasing order")
        object.__setattr__(self, "targets", tuple(self.targets))
        check_text(self.reason, "reason", MAX_REASON_CHARS)
        if not self.reason.strip():
            raise GovernanceError("reason", "must not be empty: say why the key is recovered")
        check_int(self.expires_ms, "expires_ms", 1, MAX_MS)
        if kind is RecoveryOrderKind.EXPORT:
            self._check_export()
        else:
            self._check_restore()

    def _check_export(self) -> None:
        object.__setattr__(self, "export_recipient", check_x25519_public_key(self.export_recipient, "export_recipient"))
        for i, t in enumerate(self.targets):
            if t.node != 0:
                raise GovernanceError(f"targets[{i}].node", "must be 0 in an export order (the target is the export recipient)")
        if self.follow_up is not None:
            raise GovernanceError("follow_up", "must be absent in an export order")

    def _check_restore(self) -> None:
        if self.export_recipient != b"":
            raise GovernanceError("export_recipient", "must be empty in a restore order")
        op = self.follow_up
        if not isinstance(op, KeyOperation):
            raise GovernanceError("follow_up", "required in a restore order: the refresh or reshare that runs after it")
        if not hmac.compare_digest(op.governance_root, self.governance_root):
            raise GovernanceError("follow_up.governance_root", "differs from the order's")
        for name in ("key_id", "public_key", "chain_code", "scheme"):
            if getattr(op, name, SCHEME_ECDSA) != getattr(self, name):
                raise GovernanceError(f"follow_up.{name}", "differs from the order's (another key)")
        if op.old_epoch != self.epoch:
            raise GovernanceError("follow_up.old_epoch", f"is {op.old_epoch}, the order restores epoch {self.epoch}")
        if op.roster_version != self.roster_version:
            raise GovernanceError(
                "follow_up.roster_version", f"is {op.roster_version}, the order is for roster version {self.roster_version}"
            )
        nodes: set[int] = set()
        for i, t in enumerate(self.targets):
            if t.node == 0:
                raise GovernanceError(f"targets[{i}].node", "must name a roster node (1..255) in a restore order")
            if t.node in nodes:
                raise GovernanceError(f"targets[{i}].node", f"node {t.node} appears twice")
            nodes.add(t.node)
            if t.share_index > len(op.old_committee) or op.old_committee[t.share_index - 1] != t.node:
                raise GovernanceError(f"targets[{i}].node", f"node {t.node} is not the committee member at share index {t.share_index}")

    def encode(self) -> bytes:
        v2 = self.scheme != SCHEME_ECDSA
        enc = (
            Encoder(RECOVERY_ORDER_V2_TAG if v2 else RECOVERY_ORDER_TAG).raw(self.governance_root).raw(self.order_id)
            .uint(int(self.kind)).raw(self.key_id)
            .raw(self.public_key).raw(self.chain_code).uint(self.epoch).raw(self.bundle_digest).uint(self.config_version)
            .uint(self.roster_version).count(len(self.targets))
        )
        for t in self.targets:
            enc.uint(t.share_index).uint(t.node)
        enc.raw(self.export_recipient).optional(None if self.follow_up is None else self.follow_up.encode())
        enc.text(self.reason).uint(self.expires_ms)
        if v2:
            enc.text(self.scheme)
        return enc.finish()

    def to_bytes(self) -> bytes:
        return self.encode()

    def digest(self) -> bytes:
        return sha256(self.encode())

    @property
    def proposal_id(self) -> str:
        """Hex of the first 16 bytes of :meth:`digest` (as :attr:`KeyOperation.proposal_id`)."""
        return self.digest()[:16].hex()

    @classmethod
    def from_bytes(cls, data: bytes) -> RecoveryOrder:
        v2 = _has_tag(data, RECOVERY_ORDER_V2_TAG)
        dec = Decoder(data, RECOVERY_ORDER_V2_TAG if v2 else RECOVERY_ORDER_TAG, what="order")
        root = dec.raw("governance_root", length=DIGEST_LEN)
        order_id = dec.raw("order_id", length=ORDER_ID_LEN)
        kind = RecoveryOrderKind(_check_enum(dec.uint("kind"), RecoveryOrderKind, "kind"))
        key_id = dec.raw("key_id", length=ID_LEN)
        pk = dec.raw("public_key") if v2 else dec.raw("public_key", length=PUBLIC_KEY_LEN)
        cc = dec.raw("chain_code") if v2 else dec.raw("chain_code", length=ID_LEN)
        epoch = dec.uint("epoch")
        bundle_digest = dec.raw("bundle_digest", length=DIGEST_LEN)
        config_version = dec.uint("config_version")
        roster_version = dec.uint("roster_version")
        raw_targets = [
            (dec.uint(f"targets[{i}].share_index"), dec.uint(f"targets[{i}].node"))
            for i in range(dec.count("targets", max_count=MAX_INDEX))
        ]
        recipient = dec.raw("export_recipient")
        op_bytes = dec.optional("follow_up")
        reason = dec.text("reason")
        expires_ms = dec.uint("expires_ms")
        scheme = dec.text("scheme") if v2 else SCHEME_ECDSA
        if v2 and scheme == SCHEME_ECDSA:
            raise GovernanceError("scheme", "an ecdsa-secp256k1 order is encoded with the v1 tag")
        dec.finish()
        targets: list[RecoveryTarget] = []
        for i, (s, n) in enumerate(raw_targets):
            with field_prefix(f"targets[{i}]"):
                targets.append(RecoveryTarget(s, n))
        follow_up: KeyOperation | None = None
        if op_bytes is not None:
            with field_prefix("follow_up"):
                follow_up = KeyOperation.from_bytes(op_bytes)
        out = cls(root, order_id, kind, key_id, pk, cc, epoch, bundle_digest, config_version, roster_version,
                  tuple(targets), recipient, follow_up, reason, expires_ms, scheme)
        check_canonical(out.encode(), data)
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "governance_root": self.governance_root.hex(), "order_id": self.order_id.hex(), "kind": self.kind.name.lower(),
            "key_id": self.key_id.hex(), "public_key": self.public_key.hex(), "chain_code": self.chain_code.hex(),
            "epoch": self.epoch, "bundle_digest": self.bundle_digest.hex(), "config_version": self.config_version,
            "roster_version": self.roster_version, "targets": [t.to_dict() for t in self.targets],
            "export_recipient": self.export_recipient.hex(),
            "follow_up": None if self.follow_up is None else self.follow_up.to_dict(), "reason": self.reason,
            "expires_ms": self.expires_ms,
        } | ({"scheme": self.scheme} if self.scheme != SCHEME_ECDSA else {})

    @classmethod
    def from_dict(cls, data: object) -> RecoveryOrder:
        keys = frozenset({
            "governance_root", "order_id", "kind", "key_id", "public_key", "chain_code", "epoch", "bundle_digest",
            "config_version", "roster_version", "targets", "export_recipient", "follow_up", "reason", "expires_ms",
        })
        frost = isinstance(data, dict) and "scheme" in data  # issue 16: a FROST key's order
        d = expect_dict(data, "", keys | ({"scheme"} if frost else set()))
        scheme = _check_scheme(d["scheme"]) if frost else SCHEME_ECDSA
        if frost and scheme == SCHEME_ECDSA:
            raise GovernanceError("scheme", "an ecdsa-secp256k1 order has no scheme field")
        element_len = ED25519_ELEMENT_LEN if scheme == SCHEME_ED25519 else PUBLIC_KEY_LEN
        kinds = {"restore": RecoveryOrderKind.RESTORE, "export": RecoveryOrderKind.EXPORT}
        kind = d["kind"]
        if not isinstance(kind, str) or kind not in kinds:
            raise GovernanceError("kind", f"must be 'restore' or 'export', got {quote(kind)}")
        items = d["targets"]
        if not isinstance(items, list) or len(items) > MAX_INDEX:
            raise GovernanceError("targets", f"must be a list of at most {MAX_INDEX} objects")
        targets: list[RecoveryTarget] = []
        for i, item in enumerate(items):
            with field_prefix(f"targets[{i}]"):
                targets.append(RecoveryTarget.from_dict(item))
        recipient = d["export_recipient"]
        if not isinstance(recipient, str) or len(recipient) not in (0, 2 * X25519_KEY_LEN):
            raise GovernanceError("export_recipient", f"must be empty or {X25519_KEY_LEN} bytes of hex")
        follow_up: KeyOperation | None = None
        if d["follow_up"] is not None:
            with field_prefix("follow_up"):
                follow_up = KeyOperation.from_dict(d["follow_up"])
        reason = d["reason"]
        if not isinstance(reason, str):
            raise GovernanceError("reason", "must be a string")
        return cls(
            from_hex(d["governance_root"], "governance_root", length=DIGEST_LEN),
            from_hex(d["order_id"], "order_id", length=ORDER_ID_LEN), kinds[kind],
            from_hex(d["key_id"], "key_id", length=ID_LEN), from_hex(d["public_key"], "public_key", length=element_len),
            from_hex(d["chain_code"], "chain_code", length=0 if frost else ID_LEN), json_int(d["epoch"], "epoch"),
            from_hex(d["bundle_digest"], "bundle_digest", length=DIGEST_LEN), json_int(d["config_version"], "config_version"),
            json_int(d["roster_version"], "roster_version"), tuple(targets),
            from_hex(recipient, "export_recipient", length=len(recipient) // 2), follow_up, reason,
            json_int(d["expires_ms"], "expires_ms"), scheme,
        )


@dataclass(frozen=True)
class SignedRecoveryOrder:
    """A recovery order with the admin signatures collected for it."""

    order: RecoveryOrder
    signatures: tuple[AdminSignature, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.order, RecoveryOrder):
            raise GovernanceError("order", "must be a RecoveryOrder")
        object.__setattr__(self, "signatures", check_admin_signature_list(self.signatures))

    def to_bytes(self) -> bytes:
        return encode_signed_change(SIGNED_RECOVERY_ORDER_TAG, self.order.encode(), self.signatures)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedRecoveryOrder:
        order_bytes, sigs = decode_signed_change(data, SIGNED_RECOVERY_ORDER_TAG)
        with field_prefix("order"):
            order = RecoveryOrder.from_bytes(order_bytes)
        out = cls(order, sigs)
        check_canonical(out.to_bytes(), data)
        return out

    def to_dict(self) -> dict[str, object]:
        return {"order": self.order.to_dict(), "signatures": admin_signatures_to_list(self.signatures)}

    @classmethod
    def from_dict(cls, data: object) -> SignedRecoveryOrder:
        d = expect_dict(data, "", frozenset({"order", "signatures"}))
        with field_prefix("order"):
            order = RecoveryOrder.from_dict(d["order"])
        return cls(order, admin_signatures_from_list(d["signatures"]))


def sign_recovery_order(order: RecoveryOrder, admin_name: str, private_key: Ed25519PrivateKey) -> AdminSignature:
    """Admin ``admin_name``'s Ed25519 signature over :meth:`RecoveryOrder.encode`."""
    if not isinstance(order, RecoveryOrder):
        raise GovernanceError("order", "must be a RecoveryOrder")
    check_name(admin_name, "admin_name")
    key = check_private_key(private_key, "private_key")
    return AdminSignature(admin_name, key.sign(order.encode()))


def verify_recovery_order(
    signed: SignedRecoveryOrder, admins: AdminSet, config: RecoveryConfig, *, now_ms: int | None = None
) -> RecoveryOrder:
    """The order if the verifier (its own ``admins`` and recovery ``config`` in force) accepts it:
    it names ``admins.digest()`` and ``config.version``, every signature is by a known admin and
    verifies, and at least ``admins.quorum`` (RESTORE) or ``config.export_quorum`` (EXPORT)
    distinct admins signed. With ``now_ms`` (the verifier's clock, ms since the Unix epoch) the
    order must not have expired: ``now_ms < expires_ms``. GovernanceError naming
    ``governance_root``, ``config_version``, ``expires_ms``, ``signatures[i]...`` or
    ``signatures``. (Targets against the roster, key and bundle are the verifier's own checks.)"""
    if not isinstance(signed, SignedRecoveryOrder):
        raise GovernanceError("signed", "must be a SignedRecoveryOrder")
    if not isinstance(admins, AdminSet):
        raise GovernanceError("admins", "must be an AdminSet")
    if not isinstance(config, RecoveryConfig):
        raise GovernanceError("config", "must be a RecoveryConfig")
    order = signed.order
    if not hmac.compare_digest(order.governance_root, admins.digest()):
        raise GovernanceError("governance_root", "names another governance root (another cluster or admin set)")
    if now_ms is not None:
        check_int(now_ms, "now_ms", 0, MAX_MS)
        if now_ms >= order.expires_ms:
            raise GovernanceError("expires_ms", f"the order expired at {order.expires_ms} ms (now {now_ms} ms)")
    if order.config_version != config.version:
        raise GovernanceError(
            "config_version", f"is {order.config_version}, the recovery configuration in force is version {config.version}"
        )
    require_admin_quorum(admins, order.encode(), signed.signatures)
    if order.kind is RecoveryOrderKind.EXPORT:
        distinct = len({s.admin for s in signed.signatures})
        if distinct < config.export_quorum:
            raise GovernanceError(
                "signatures", f"{distinct} distinct admin(s) signed this break-glass export, {config.export_quorum} required"
            )
    return order


# --- node-signed statements ------------------------------------------------------------------


@dataclass(frozen=True)
class RecoveryReceipt:
    """Node ``node`` restored and durably stored share ``share_index`` of ``key_id`` at ``epoch``
    under order ``order_id`` (16 bytes); the share matched ``public_share`` (33 bytes; issue 16: 32 for an ed25519 key).
    ``signature``: the node's Ed25519 identity signature over :meth:`message`."""

    order_id: bytes
    key_id: bytes
    epoch: int
    share_index: int
    node: int
    public_share: bytes
    signature: bytes = bytes(SIGNATURE_LEN)

    def __post_init__(self) -> None:
        object.__setattr__(self, "order_id", check_bytes(self.order_id, "order_id", length=ORDER_ID_LEN))
        object.__setattr__(self, "key_id", check_bytes(self.key_id, "key_id", length=ID_LEN))
        check_int(self.epoch, "epoch", 0, MAX_EPOCH)
        check_int(self.share_index, "share_index", 1, MAX_INDEX)
        check_int(self.node, "node", 1, MAX_INDEX)
        object.__setattr__(self, "public_share", check_element(self.public_share, "public_share"))  # issue 16: or Ed25519
        object.__setattr__(self, "signature", check_bytes(self.signature, "signature", length=SIGNATURE_LEN))

    def message(self) -> bytes:
        return (
            Encoder(RECOVERY_RECEIPT_MESSAGE_TAG).raw(self.order_id).raw(self.key_id).uint(self.epoch)
            .uint(self.share_index).uint(self.node).raw(self.public_share).finish()
        )

    def to_bytes(self) -> bytes:
        return _signed_encoding(RECOVERY_RECEIPT_TAG, self.message(), self.signature)

    @classmethod
    def from_bytes(cls, data: bytes) -> RecoveryReceipt:
        msg, signature = _signed_decoding(data, RECOVERY_RECEIPT_TAG, "receipt")
        dec = Decoder(msg, RECOVERY_RECEIPT_MESSAGE_TAG, what="receipt message")
        order_id = dec.raw("order_id", length=ORDER_ID_LEN)
        key_id = dec.raw("key_id", length=ID_LEN)
        epoch = dec.uint("epoch")
        share_index = dec.uint("share_index")
        node = dec.uint("node")
        public_share = dec.raw("public_share")  # 33 bytes, or 32 for an ed25519 key (issue 16): checked by the constructor
        dec.finish()
        out = cls(order_id, key_id, epoch, share_index, node, public_share, signature)
        check_canonical(out.to_bytes(), data)
        return out

    def verify(self, identity_public: bytes) -> bool:
        return ed25519_verify(identity_public, self.signature, self.message())

    def to_dict(self) -> dict[str, object]:
        return {
            "order_id": self.order_id.hex(), "key_id": self.key_id.hex(), "epoch": self.epoch, "share_index": self.share_index,
            "node": self.node, "public_share": self.public_share.hex(), "signature": self.signature.hex(),
        }


def sign_recovery_receipt(receipt: RecoveryReceipt, identity: Ed25519PrivateKey) -> RecoveryReceipt:
    """``receipt`` with its ``signature`` made by ``identity`` (the node's identity key)."""
    if not isinstance(receipt, RecoveryReceipt):
        raise GovernanceError("receipt", "must be a RecoveryReceipt")
    key = check_private_key(identity, "identity")
    return dataclasses.replace(receipt, signature=key.sign(receipt.message()))


def check_outcomes(value: object, field: str = "outcomes") -> tuple[tuple[int, str], ...]:
    """0..64 ``(officer_index, outcome)`` pairs, officer indices (1..64) increasing, outcomes from
    :data:`OUTCOMES`."""
    if not isinstance(value, (tuple, list)) or len(value) > MAX_OFFICERS:
        raise GovernanceError(field, f"must be a sequence of at most {MAX_OFFICERS} (officer_index, outcome) pairs")
    out: list[tuple[int, str]] = []
    for i, item in enumerate(value):
        f = f"{field}[{i}]"
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise GovernanceError(f, "must be an (officer_index, outcome) pair")
        officer = check_int(item[0], f"{f}.officer", 1, MAX_OFFICERS)
        if out and officer <= out[-1][0]:
            raise GovernanceError(f"{f}.officer", "officer indices must be distinct and in increasing order")
        outcome = item[1]
        if not isinstance(outcome, str) or outcome not in OUTCOMES:
            raise GovernanceError(f"{f}.outcome", f"must be one of {', '.join(sorted(OUTCOMES))}, got {quote(outcome)}")
        out.append((officer, outcome))
    return tuple(out)


@dataclass(frozen=True)
class DrillReport:
    """Node ``node``'s result of drill ``ceremony_id`` (16 bytes) for its share ``share_index``
    of ``key_id`` at ``epoch`` from bundle ``bundle_digest``: ``ok`` iff the share rebuilt from
    the officers' pieces matched its public share and its live share; ``outcomes`` per officer
    (:func:`check_outcomes`). ``signature``: the node's Ed25519 identity signature."""

    ceremony_id: bytes
    key_id: bytes
    epoch: int
    share_index: int
    node: int
    bundle_digest: bytes
    ok: bool
    outcomes: tuple[tuple[int, str], ...]
    signature: bytes = bytes(SIGNATURE_LEN)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ceremony_id", check_bytes(self.ceremony_id, "ceremony_id", length=CEREMONY_ID_LEN))
        object.__setattr__(self, "key_id", check_bytes(self.key_id, "key_id", length=ID_LEN))
        check_int(self.epoch, "epoch", 0, MAX_EPOCH)
        check_int(self.share_index, "share_index", 1, MAX_INDEX)
        check_int(self.node, "node", 1, MAX_INDEX)
        object.__setattr__(self, "bundle_digest", check_bytes(self.bundle_digest, "bundle_digest", length=DIGEST_LEN))
        if not isinstance(self.ok, bool):
            raise GovernanceError("ok", "must be a bool")
        object.__setattr__(self, "outcomes", check_outcomes(self.outcomes))
        object.__setattr__(self, "signature", check_bytes(self.signature, "signature", length=SIGNATURE_LEN))

    def message(self) -> bytes:
        enc = (
            Encoder(DRILL_REPORT_MESSAGE_TAG).raw(self.ceremony_id).raw(self.key_id).uint(self.epoch)
            .uint(self.share_index).uint(self.node).raw(self.bundle_digest).flag(self.ok).count(len(self.outcomes))
        )
        for officer, outcome in self.outcomes:
            enc.uint(officer).text(outcome)
        return enc.finish()

    def to_bytes(self) -> bytes:
        return _signed_encoding(DRILL_REPORT_TAG, self.message(), self.signature)

    @classmethod
    def from_bytes(cls, data: bytes) -> DrillReport:
        msg, signature = _signed_decoding(data, DRILL_REPORT_TAG, "report")
        dec = Decoder(msg, DRILL_REPORT_MESSAGE_TAG, what="report message")
        ceremony_id = dec.raw("ceremony_id", length=CEREMONY_ID_LEN)
        key_id = dec.raw("key_id", length=ID_LEN)
        epoch = dec.uint("epoch")
        share_index = dec.uint("share_index")
        node = dec.uint("node")
        bundle_digest = dec.raw("bundle_digest", length=DIGEST_LEN)
        ok = dec.flag("ok")
        outcomes = tuple(
            (dec.uint(f"outcomes[{i}].officer"), dec.text(f"outcomes[{i}].outcome"))
            for i in range(dec.count("outcomes", max_count=MAX_OFFICERS))
        )
        dec.finish()
        out = cls(ceremony_id, key_id, epoch, share_index, node, bundle_digest, ok, outcomes, signature)
        check_canonical(out.to_bytes(), data)
        return out

    def verify(self, identity_public: bytes) -> bool:
        return ed25519_verify(identity_public, self.signature, self.message())

    def to_dict(self) -> dict[str, object]:
        return {
            "ceremony_id": self.ceremony_id.hex(), "key_id": self.key_id.hex(), "epoch": self.epoch,
            "share_index": self.share_index, "node": self.node, "bundle_digest": self.bundle_digest.hex(), "ok": self.ok,
            "outcomes": [{"officer": o, "outcome": s} for o, s in self.outcomes], "signature": self.signature.hex(),
        }


def sign_drill_report(report: DrillReport, identity: Ed25519PrivateKey) -> DrillReport:
    """``report`` with its ``signature`` made by ``identity`` (the node's identity key)."""
    if not isinstance(report, DrillReport):
        raise GovernanceError("report", "must be a DrillReport")
    key = check_private_key(identity, "identity")
    return dataclasses.replace(report, signature=key.sign(report.message()))


@dataclass(frozen=True)
class EpochAttestation:
    """Node ``node`` holds a live share of ``key_id`` at ``epoch`` (its active epoch), said for
    drill ceremony ``ceremony_id`` (16 bytes, so an attestation cannot be replayed for another
    drill). Officers and the coordinator open a drill of a bundle only when at least the key's
    threshold of distinct committee members attest the bundle's epoch: a superseded bundle
    would hand a (possibly corrupted) holder its refreshed-away share. ``attested_ms``: when the
    node signed it (its clock, ms since the Unix epoch, 0..2**63-1): an officer counts only a
    recent one, so a drill kept open by a coordinator past a refresh cannot reuse attestations
    of the refreshed-away epoch. ``signature``: the node's Ed25519 identity signature over
    :meth:`message`."""

    ceremony_id: bytes
    key_id: bytes
    epoch: int
    node: int
    signature: bytes = bytes(SIGNATURE_LEN)
    attested_ms: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ceremony_id", check_bytes(self.ceremony_id, "ceremony_id", length=CEREMONY_ID_LEN))
        object.__setattr__(self, "key_id", check_bytes(self.key_id, "key_id", length=ID_LEN))
        check_int(self.epoch, "epoch", 0, MAX_EPOCH)
        check_int(self.node, "node", 1, MAX_INDEX)
        object.__setattr__(self, "signature", check_bytes(self.signature, "signature", length=SIGNATURE_LEN))
        check_int(self.attested_ms, "attested_ms", 0, MAX_MS)

    def message(self) -> bytes:
        return (
            Encoder(EPOCH_ATTESTATION_MESSAGE_TAG).raw(self.ceremony_id).raw(self.key_id).uint(self.epoch)
            .uint(self.node).uint(self.attested_ms).finish()
        )

    def to_bytes(self) -> bytes:
        return _signed_encoding(EPOCH_ATTESTATION_TAG, self.message(), self.signature)

    @classmethod
    def from_bytes(cls, data: bytes) -> EpochAttestation:
        msg, signature = _signed_decoding(data, EPOCH_ATTESTATION_TAG, "attestation")
        dec = Decoder(msg, EPOCH_ATTESTATION_MESSAGE_TAG, what="attestation message")
        ceremony_id = dec.raw("ceremony_id", length=CEREMONY_ID_LEN)
        key_id = dec.raw("key_id", length=ID_LEN)
        epoch = dec.uint("epoch")
        node = dec.uint("node")
        attested_ms = dec.uint("attested_ms")
        dec.finish()
        out = cls(ceremony_id, key_id, epoch, node, signature, attested_ms)
        check_canonical(out.to_bytes(), data)
        return out

    def verify(self, identity_public: bytes) -> bool:
        return ed25519_verify(identity_public, self.signature, self.message())

    def to_dict(self) -> dict[str, object]:
        return {
            "ceremony_id": self.ceremony_id.hex(), "key_id": self.key_id.hex(), "epoch": self.epoch, "node": self.node,
            "attested_ms": self.attested_ms, "signature": self.signature.hex(),
        }


def sign_epoch_attestation(attestation: EpochAttestation, identity: Ed25519PrivateKey) -> EpochAttestation:
    """``attestation`` with its ``signature`` made by ``identity`` (the node's identity key)."""
    if not isinstance(attestation, EpochAttestation):
        raise GovernanceError("attestation", "must be an EpochAttestation")
    key = check_private_key(identity, "identity")
    return dataclasses.replace(attestation, signature=key.sign(attestation.message()))
