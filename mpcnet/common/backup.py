"""Backup parts, officers' checks and piece deliveries (issue 12, design section 3). Secret: this
module handles shares (node side) and pieces (officer and node sides); the coordinator must not
import it (it uses :mod:`mpcnet.common.bundle`).

* Node: :func:`make_part` splits the node's share m-of-k (:func:`crypto_core.backup.split_share`),
  encrypts piece j as a :class:`~governance.recovery.BackupPiece` to officer j with age and signs
  the part with the node's identity key; :func:`open_deliveries` decrypts the officers'
  :class:`~governance.recovery.PieceDelivery` files sent to it in a ceremony, checks each (binding,
  Feldman) and rebuilds the share; :func:`recovered_share` wraps it as a
  :class:`~crypto_core.backup.RecoveredShare` (restore); :func:`drill_check` compares it with
  the live share and forgets it (drill).
* Officer: :func:`officer_check` decrypts her own pieces of a bundle and checks them against the
  commitments; :func:`officer_deliveries` re-encrypts her pieces to a ceremony's targets.
* Off-line machine (break-glass export): :func:`open_deliveries` per share, then
  :func:`recover_key`.

Outcomes per officer are those of :data:`governance.recovery.OUTCOMES`: ``ok``, ``bad-piece``
(does not match the commitments), ``undecryptable`` (not an age file for this key),
``wrong-binding`` (decrypts, but for another ceremony, purpose, key, epoch, share, officer or
bundle), ``missing``. No function logs, returns in an error or reprs a share or a piece.

Issue 16: a FROST key's share (:class:`~crypto_core.frost.keyshare.FrostKeyShare`, schemes
``ed25519`` and ``schnorr-secp256k1-bip340``) is split, checked and rebuilt the same way in its
own group (:mod:`crypto_core.frost.backup`, :mod:`mpcnet.common.key_group`), its pieces in the
group's 32-byte scalar encoding; the bundle's :class:`~governance.recovery.BackupKey` names the
scheme. ECDSA keys keep the issue-12 code (:mod:`crypto_core.backup`) unchanged.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crypto_core import backup as ecdsa_backup
from crypto_core.backup import BAD_PIECE, OK, RecoveredShare
from crypto_core.errors import DecodeError, RecoveryError
from crypto_core.frost import backup as frost_backup
from crypto_core.frost.group import Element
from crypto_core.frost.keyshare import FrostKeyShare
from crypto_core.frost.poly import lagrange_at
from crypto_core.group import Point
from crypto_core.keyshare import KeyShare
from crypto_core.rng import SYSTEM_RNG, Rng
from governance.errors import GovernanceError
from governance.recovery import (
    BackupBundle,
    BackupKey,
    BackupPart,
    BackupPiece,
    PieceDelivery,
    PiecePurpose,
    SignedBackupPart,
    SignedRecoveryConfigChange,
    sign_backup_part,
)
from governance.text import escape
from mpcnet.common import agekeys
from mpcnet.common.bundle import BundleError, config_of
from mpcnet.common.key_group import check_commitments, decode_scalar, encode_scalar, key_group, piece_matches, public_share_of

UNDECRYPTABLE = "undecryptable"
WRONG_BINDING = "wrong-binding"
MISSING = "missing"


Share = KeyShare | FrostKeyShare
"""A live key share a node backs up: DKLs23 (ECDSA) or FROST (issue 16)."""


def _public_shares(share: Share) -> tuple[bytes, ...]:
    if isinstance(share, FrostKeyShare):
        return tuple(share.public_shares)
    return tuple(s.encode() for s in share.public_shares)


def _split(key: BackupKey, secret: int, m: int, k: int, rng: Rng) -> tuple[list[int], list[bytes]]:
    """``(pieces, commitment encodings)`` of an m-of-k split in the key's group."""
    if key.is_frost:
        group = key_group(key.scheme)
        values, elements = frost_backup.split_share(group, secret, m, k, rng)
        return values, [group.encode(c) for c in elements]
    values, points = ecdsa_backup.split_share(secret, m, k, rng)
    return values, [c.encode() for c in points]


def _reconstruct(key: BackupKey, commitments: list[Element], pieces: dict[int, int], m: int) -> tuple[int, dict[int, str]]:
    if key.is_frost:
        return frost_backup.reconstruct(key_group(key.scheme), commitments, pieces, m)
    return ecdsa_backup.reconstruct(commitments, pieces, m)  # type: ignore[arg-type]  # secp256k1 Points


def key_record(share: Share, committee: tuple[int, ...]) -> BackupKey:
    """The public record of ``share``'s key (``committee``: roster indices by share index); a
    FROST share's record names its scheme and has no chain code (issue 16). BundleError naming
    ``key.label`` (not UTF-8) or the field GovernanceError names."""
    try:
        label = share.key_label.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError("key.label", "the key's label is not UTF-8 text") from None
    try:
        if isinstance(share, FrostKeyShare):
            return BackupKey(
                key_id=share.key_id, public_key=share.public_key, chain_code=b"", label=label, threshold=share.threshold,
                epoch=share.epoch, committee=tuple(committee), public_shares=tuple(share.public_shares), scheme=share.scheme,
            )
        return BackupKey(
            key_id=share.key_id, public_key=share.public_key.encode(), chain_code=share.chain_code, label=label,
            threshold=share.threshold, epoch=share.epoch, committee=tuple(committee),
            public_shares=tuple(s.encode() for s in share.public_shares),
        )
    except GovernanceError as e:
        raise BundleError(f"key.{e.field}", e.reason) from None


def make_part(
    share: Share,
    *,
    node: int,
    roster_version: int,
    governance_root: bytes,
    config_change: SignedRecoveryConfigChange,
    key: BackupKey,
    identity: Ed25519PrivateKey,
    now_ms: int,
    rng: Rng = SYSTEM_RNG,
) -> SignedBackupPart:
    """Node ``node``'s signed backup part of ``share`` for the recovery configuration of
    ``config_change`` (the caller verified it against its admin set).

    ``key`` must be the public record of ``share``'s key and epoch with ``node`` at the share's
    position, its public shares and label (BundleError naming ``key``, ``key.committee``,
    ``key.public_shares`` or ``key.label`` otherwise; a record with another label would verify
    and drill, but a share restored from it could never deal in the follow-up refresh). The share is split m-of-k (m = quorum, k =
    officers); piece j is a :class:`BackupPiece` age-encrypted to officer j's recipient.
    """
    config = config_change.change.config
    if not hmac.compare_digest(config_change.change.governance_root, governance_root):
        raise BundleError("config_change.governance_root", "names another governance root", node=node)
    if key.key_id != share.key_id or key.epoch != share.epoch or key.threshold != share.threshold:
        raise BundleError("key", "is not the public record of this share's key and epoch", node=node)
    if len(key.committee) != share.parties or key.committee[share.index - 1] != node:
        raise BundleError("key.committee", f"does not place node {node} at share index {share.index}", node=node)
    if key.scheme != getattr(share, "scheme", "ecdsa-secp256k1"):
        raise BundleError("key.scheme", "is not the share's scheme", node=node)
    if key.public_shares != _public_shares(share):
        raise BundleError("key.public_shares", "differ from the share's public shares", node=node)
    if key.label.encode("utf-8") != share.key_label:  # the label is in every reshare configuration's digest
        raise BundleError("key.label", "differs from the share's key label", node=node)
    k = len(config.officers)
    values, commitments = _split(key, share.secret_share, config.quorum, k, rng)
    try:
        files = tuple(
            agekeys.encrypt(
                officer.recipient,
                BackupPiece(key.key_id, key.epoch, share.index, j, config.version, encode_scalar(key.scheme, values[j - 1])).encode(),
            )
            for j, officer in enumerate(config.officers, 1)
        )
    finally:
        values.clear()
    part = BackupPart(
        governance_root=governance_root, key_digest=key.digest(), key_id=key.key_id, epoch=key.epoch,
        share_index=share.index, node=node, roster_version=roster_version, config_version=config.version,
        config_digest=config.digest(), commitments=tuple(commitments), pieces=files,
        created_ms=now_ms,
    )
    return sign_backup_part(part, identity)


def _officer(bundle: BackupBundle, private: bytes) -> int:
    index = config_of(bundle).officer_by_recipient(agekeys.public_key(private))
    if index is None:
        raise BundleError("recovery_key", "is not the key of any recovery officer of this bundle's configuration")
    return index


def _part(bundle: BackupBundle, share_index: int) -> SignedBackupPart:
    for sp in bundle.parts:
        if sp.part.share_index == share_index:
            return sp
    raise BundleError("share_index", f"the bundle has no part for share index {share_index}")


def _commitments(bundle: BackupBundle, sp: SignedBackupPart) -> list[Element]:
    p = sp.part
    try:
        return check_commitments(bundle.key, p.commitments, config_of(bundle).quorum, p.share_index)
    except (DecodeError, IndexError) as e:
        raise BundleError(f"parts[{p.share_index - 1}].commitments", str(e), node=p.node) from None


@dataclass(frozen=True)
class PieceCheck:
    """One part's piece for an officer: share index, node, outcome (``ok``, ``undecryptable``,
    ``wrong-binding``, ``bad-piece``) and a reason (no secret)."""

    share_index: int
    node: int
    outcome: str
    reason: str = ""


@dataclass(frozen=True)
class OfficerReport:
    """An officer's check of her pieces in a bundle: her index and name, one :class:`PieceCheck`
    per part (share index order)."""

    officer_index: int
    officer_name: str
    pieces: tuple[PieceCheck, ...]

    @property
    def ok(self) -> bool:
        return all(p.outcome == OK for p in self.pieces)

    def to_dict(self) -> dict[str, object]:
        return {
            "officer_index": self.officer_index, "officer": self.officer_name, "ok": self.ok,
            "pieces": [{"share_index": p.share_index, "node": p.node, "outcome": p.outcome, "reason": p.reason} for p in self.pieces],
        }


def _own_piece(bundle: BackupBundle, sp: SignedBackupPart, officer: int, private: bytes) -> tuple[int | None, PieceCheck]:
    """Decrypt and check officer ``officer``'s piece of part ``sp``: ``(value or None, check)``."""
    p = sp.part
    config = config_of(bundle)

    def check(outcome: str, reason: str) -> tuple[int | None, PieceCheck]:
        return None, PieceCheck(p.share_index, p.node, outcome, reason)

    if not 1 <= officer <= len(p.pieces):
        return check(MISSING, "the part has no piece for this officer")
    try:
        plain = agekeys.decrypt(private, p.pieces[officer - 1])
    except agekeys.AgeKeyError as e:
        return check(UNDECRYPTABLE, str(e))
    try:
        piece = BackupPiece.from_bytes(plain)
        value = decode_scalar(bundle.key.scheme, piece.value, "value")
    except (GovernanceError, DecodeError) as e:
        return check(WRONG_BINDING, f"not a backup piece ({e.field})")
    want = (bundle.key.key_id, bundle.key.epoch, p.share_index, officer, config.version)
    got = (piece.key_id, piece.epoch, piece.share_index, piece.officer_index, piece.config_version)
    if got != want:
        names = ("key_id", "epoch", "share_index", "officer_index", "config_version")
        wrong = [n for n, a, b in zip(names, got, want, strict=True) if a != b]
        return check(WRONG_BINDING, "the piece names another " + ", ".join(wrong))
    try:
        commitments = _commitments(bundle, sp)
    except BundleError as e:
        return check(BAD_PIECE, f"the part's commitments do not check ({e.message})")
    if not piece_matches(bundle.key.scheme, commitments, officer, value):
        return check(BAD_PIECE, "does not match the part's Feldman commitments")
    return value, PieceCheck(p.share_index, p.node, OK)


def officer_check(bundle: BackupBundle, private: bytes) -> OfficerReport:
    """Which officer ``private`` (her 32-byte X25519 key) is, and whether each of her pieces in
    the bundle decrypts, is bound to this key/epoch/share/officer/configuration and matches the
    part's commitments. BundleError naming ``recovery_key`` if she is no officer of the bundle."""
    officer = _officer(bundle, private)
    checks = tuple(_own_piece(bundle, sp, officer, private)[1] for sp in bundle.parts)
    return OfficerReport(officer, config_of(bundle).officers[officer - 1].name, checks)


def officer_deliveries(
    bundle: BackupBundle,
    private: bytes,
    *,
    ceremony_id: bytes,
    purpose: PiecePurpose,
    targets: Mapping[int, bytes],
) -> dict[int, bytes]:
    """The officer's pieces re-encrypted for a ceremony: ``{share index: age file}`` where each
    file is a :class:`PieceDelivery` (bound to ``ceremony_id``, ``purpose``, the key, epoch,
    share index, officer index and the bundle's digest) encrypted to ``targets[share index]``
    (a 32-byte X25519 recipient: a node's roster encryption key, or an export order's recipient).

    Refuses (BundleError naming the node and the officer) when one of her pieces does not check:
    she never sends a bad piece. BundleError naming ``targets`` for an unknown share index or a
    bad recipient, ``ceremony_id`` or ``purpose`` when one is malformed.
    """
    if any(type(s) is not int for s in targets):  # True == 1; and never echo a caller's key
        raise BundleError("targets", "share indices must be ints")
    try:  # the binding fields, checked before anything is decrypted
        PieceDelivery(ceremony_id, purpose, bundle.key.key_id, bundle.key.epoch, 1, 1, bytes(32), bytes(32))
    except GovernanceError as e:
        raise BundleError(e.field, escape(e.reason)) from None
    officer = _officer(bundle, private)
    digest = bundle.digest()
    out: dict[int, bytes] = {}
    for share_index in sorted(targets):
        try:
            sp = _part(bundle, share_index)
        except BundleError as e:
            raise BundleError(f"targets[{share_index}]", e.message) from None
        value, check = _own_piece(bundle, sp, officer, private)
        if value is None:
            raise BundleError(
                f"parts[{share_index - 1}].pieces[{officer - 1}]", f"{check.outcome}: {check.reason}",
                node=sp.part.node, officer=officer,
            )
        delivery = PieceDelivery(
            ceremony_id, purpose, bundle.key.key_id, bundle.key.epoch, share_index, officer, digest,
            encode_scalar(bundle.key.scheme, value),
        )
        try:
            out[share_index] = agekeys.encrypt(targets[share_index], delivery.encode())
        except agekeys.AgeKeyError as e:
            raise BundleError(f"targets[{share_index}]", str(e)) from None
    return out


def _open_one(
    bundle: BackupBundle, share_index: int, officer: int, data: bytes, private: bytes, ceremony_id: bytes,
    purpose: PiecePurpose, digest: bytes,
) -> tuple[int | None, str]:
    try:
        plain = agekeys.decrypt(private, data)
    except agekeys.AgeKeyError:
        return None, UNDECRYPTABLE
    try:
        d = PieceDelivery.from_bytes(plain)
        value = decode_scalar(bundle.key.scheme, d.value, "value")
    except (GovernanceError, DecodeError):
        return None, WRONG_BINDING
    same = (
        hmac.compare_digest(d.ceremony_id, ceremony_id) and d.purpose == purpose and d.key_id == bundle.key.key_id
        and d.epoch == bundle.key.epoch and d.share_index == share_index and d.officer_index == officer
        and hmac.compare_digest(d.bundle_digest, digest)
    )
    return (value, OK) if same else (None, WRONG_BINDING)


def open_deliveries(
    bundle: BackupBundle,
    share_index: int,
    ciphertexts: Mapping[int, bytes],
    private: bytes,
    *,
    ceremony_id: bytes,
    purpose: PiecePurpose,
) -> tuple[int | None, dict[int, str]]:
    """Rebuild the share at ``share_index`` from officers' deliveries ``{officer index: age file}``
    sent to the X25519 key ``private`` (a node's encryption key, or an export recipient's).

    Each delivery must decrypt, be a :class:`PieceDelivery` bound to ``ceremony_id``, ``purpose``,
    the bundle's key, epoch and digest, this share index and its officer index, and match the
    part's commitments. Returns ``(secret, outcomes)``: the share (an int, secret: the caller
    destroys it) or ``None`` when fewer than the quorum of pieces are good, and an outcome for
    every officer of the configuration (``missing`` for those who sent nothing). BundleError
    naming ``ciphertexts`` for an officer index outside the configuration, ``share_index`` for a
    share the bundle does not hold.
    """
    config = config_of(bundle)
    sp = _part(bundle, share_index)
    commitments = _commitments(bundle, sp)
    k = len(config.officers)
    for j in ciphertexts:
        if type(j) is not int or not 1 <= j <= k:
            raise BundleError("ciphertexts", f"officer index {j!r} is not one of the configuration's 1..{k}")
    digest = bundle.digest()
    outcomes: dict[int, str] = {j: MISSING for j in range(1, k + 1)}
    pieces: dict[int, int] = {}
    for j in sorted(ciphertexts):
        value, outcome = _open_one(bundle, share_index, j, ciphertexts[j], private, ceremony_id, purpose, digest)
        outcomes[j] = outcome
        if value is not None:
            pieces[j] = value
    try:
        secret, checked = _reconstruct(bundle.key, commitments, pieces, config.quorum)
    except RecoveryError as e:
        for j in e.officers:
            outcomes[j] = BAD_PIECE
        return None, outcomes
    finally:
        pieces.clear()
    outcomes.update(checked)
    return secret, outcomes


def attribute_deliveries(
    ciphertexts: Sequence[bytes], private: bytes, k: int
) -> tuple[dict[int, bytes], set[int], list[int]]:
    """Deliveries relayed without their officer, keyed by the officer index bound inside each
    (:class:`~governance.recovery.PieceDelivery`, opened with ``private``). Returns
    ``(first, duplicates, stray)``: officer -> her first age file, the officers who sent more than
    one, and the positions of the files that do not open or name no officer of 1..k. Only
    attributes: the binding itself is checked by :func:`open_deliveries`."""
    first: dict[int, bytes] = {}
    duplicates: set[int] = set()
    stray: list[int] = []
    for i, ct in enumerate(ciphertexts):
        try:
            j = PieceDelivery.from_bytes(agekeys.decrypt(private, ct)).officer_index
        except (agekeys.AgeKeyError, GovernanceError, ValueError):
            j = 0
        if not 1 <= j <= k:
            stray.append(i)
        elif j in first:
            duplicates.add(j)
        else:
            first[j] = ct
    return first, duplicates, stray


def drill_check(
    bundle: BackupBundle,
    share_index: int,
    ciphertexts: Mapping[int, bytes],
    private: bytes,
    *,
    ceremony_id: bytes,
    live_share: int,
) -> tuple[bool, dict[int, str]]:
    """A drill on the node holding ``share_index``: rebuild the share from the officers'
    deliveries (purpose DRILL, :func:`open_deliveries`), compare it with the node's ``live_share``
    (the share of the bundle's epoch it holds) and forget it. Returns ``(ok, outcomes)``: ``ok``
    iff a quorum of pieces was good and the rebuilt share equals the live one (its public share
    was already checked by the Feldman commitments)."""
    secret, outcomes = open_deliveries(
        bundle, share_index, ciphertexts, private, ceremony_id=ceremony_id, purpose=PiecePurpose.DRILL
    )
    if secret is None:
        return False, outcomes
    group = key_group(bundle.key.scheme)
    ok = hmac.compare_digest(encode_scalar(bundle.key.scheme, secret), encode_scalar(bundle.key.scheme, live_share % group.order))
    del secret
    return ok, outcomes


def recovered_share(bundle: BackupBundle, share_index: int, secret: int) -> RecoveredShare:
    """The :class:`RecoveredShare` of ``secret`` at ``share_index`` of the bundle's key (checked:
    ``secret*G`` is the public share; DecodeError otherwise). An ECDSA key only: a FROST key's
    restore is :func:`recovered_frost_share` (DecodeError naming ``key.scheme`` here)."""
    key = bundle.key
    if key.is_frost:
        raise DecodeError("key.scheme", f"a {key.scheme} key is restored as a FROST key share")
    rs = RecoveredShare(
        threshold=key.threshold, parties=len(key.committee), index=share_index, secret_share=secret,
        public_key=Point.decode(key.public_key, "public_key"),
        public_shares=tuple(Point.decode(s, f"public_shares[{i}]") for i, s in enumerate(key.public_shares)),
        chain_code=key.chain_code, key_label=key.label.encode("utf-8"), epoch=key.epoch,
    )
    rs.validate()
    return rs


def recovered_frost_share(bundle: BackupBundle, share_index: int, secret: int) -> FrostKeyShare:
    """The :class:`FrostKeyShare` of ``secret`` at ``share_index`` of the bundle's FROST key
    (issue 16): a FROST share has no pairwise material, so the rebuilt share with the key's public
    record is complete; it deals in the restore order's follow-up refresh/reshare
    (:mod:`crypto_core.frost.reshare`). Its ``sid_dkg`` is the bundle's digest (the reshare never
    reads it; the follow-up gives the next epoch its own). DecodeError naming ``key.scheme`` for
    an ECDSA key, or the field :meth:`FrostKeyShare.validate` names (the secret does not match
    its public share, ...)."""
    key = bundle.key
    if not key.is_frost:
        raise DecodeError("key.scheme", "an ecdsa-secp256k1 key is restored as a RecoveredShare")
    fs = FrostKeyShare(
        scheme=key.scheme, threshold=key.threshold, parties=len(key.committee), index=share_index, secret_share=secret,
        public_key=key.public_key, public_shares=tuple(key.public_shares), sid_dkg=bundle.digest(),
        key_label=key.label.encode("utf-8"), epoch=key.epoch,
    )
    fs.validate()
    return fs


def recover_key(bundle: BackupBundle, shares: Mapping[int, int]) -> int:
    """The whole private key from ``threshold`` shares ``{share index: share}`` (break-glass export,
    off-line only), checked against the bundle's public key. BundleError naming ``shares``
    (too few, an index outside the committee, or a share that does not match its public share)."""
    key = bundle.key
    n = len(key.committee)
    q = key_group(key.scheme).order  # issue 16: a FROST key's shares in its own group
    if len(shares) < key.threshold or any(type(i) is not int or not 1 <= i <= n for i in shares):
        raise BundleError("shares", f"need {key.threshold} shares at indices in 1..{n}")
    for i, x in shares.items():
        if type(x) is not int or not 0 < x < q or public_share_of(key.scheme, x) != key.public_shares[i - 1]:
            raise BundleError("shares", f"the share at index {i} does not match its public share", node=key.committee[i - 1])
    chosen = sorted(shares)[: key.threshold]
    secret = sum(lagrange_at(key_group(key.scheme), i, chosen) * shares[i] for i in chosen) % q
    if secret == 0 or public_share_of(key.scheme, secret) != key.public_key:
        raise BundleError("shares", "the shares do not interpolate to the key's public key")
    return secret


__all__ = [
    "MISSING", "UNDECRYPTABLE", "WRONG_BINDING", "OfficerReport", "PieceCheck", "attribute_deliveries", "drill_check",
    "key_record", "make_part",
    "officer_check", "officer_deliveries", "open_deliveries", "recover_key", "recovered_frost_share", "recovered_share",
]
