"""Public checks and assembly of backup bundles (issue 12, design section 3): what the coordinator
and anyone holding a bundle file may run. Secret-free: no private key, share or piece is read
here, and nothing here imports ``crypto_core.backup`` or another secret-holding module (only
``crypto_core.feldman``, ``group`` and ``errors``; tests/test_import_contract.py).

:func:`verify_bundle` is the whole public check of a :class:`~governance.recovery.BackupBundle`
against the verifier's own admin set: :meth:`BackupBundle.check_structure` (admin signatures of
the recovery configuration, roster chain, each part's node signature under its roster identity
key, digests, counts, completeness) plus the elliptic-curve checks: the key id is the public
key's, the public shares lie on one degree-(t-1) polynomial in the exponent through the public
key, every part's commitments are points with ``C_0`` its node's public share, and every piece is
a well-formed age file to one X25519 recipient. Every failure is a :class:`BundleError` naming
the field, and the node (share holder) or officer at fault when there is one.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from crypto_core.errors import DecodeError
from governance.errors import GovernanceError
from governance.policy import AdminSet
from governance.recovery import (
    BUNDLE_FORMAT_VERSION,
    BackupBundle,
    BackupKey,
    RecoveryConfig,
    RecoveryOrder,
    RecoveryOrderKind,
    SignedBackupPart,
    SignedRecoveryConfigChange,
)
from governance.roster import SignedRosterChange, verify_roster_history
from governance.text import escape
from mpcnet.common.agekeys import AgeKeyError, check_age_file
from mpcnet.common.key_group import check_commitments, check_key_public

_SUBJECT_NODE = re.compile(r"node ([0-9]{1,3})")


class BundleError(ValueError):
    """A bundle (or a part, piece or delivery of it) that fails a check.

    ``field`` is the dotted path of what is wrong (``parts[2].signature``, ``key.public_shares[4]``,
    ``parts[0].pieces[1]``); ``node`` the roster index of the share holder at fault, ``officer``
    the 1-based officer index at fault, when known. The message never contains a secret.
    """

    def __init__(self, field: str, message: str, *, node: int | None = None, officer: int | None = None) -> None:
        self.field = field
        self.message = message
        self.node = node
        self.officer = officer
        who = [f"node {node}"] if node is not None else []
        who += [f"officer {officer}"] if officer is not None else []
        super().__init__(f"{field}: {message}" + (f" [{', '.join(who)}]" if who else ""))


@dataclass(frozen=True)
class BundleSummary:
    """What a verified bundle backs up: key id, public key (33 bytes), label, threshold t, epoch,
    committee (roster indices by share index), recovery configuration version, quorum m and
    officer names (by officer index), the roster version of each part (by share index), the
    bundle's creation time (ms) and digest (SHA-256 of the file)."""

    key_id: bytes
    public_key: bytes
    label: str
    threshold: int
    epoch: int
    committee: tuple[int, ...]
    config_version: int
    quorum: int
    officers: tuple[str, ...]
    roster_versions: tuple[int, ...]
    created_ms: int
    digest: bytes
    scheme: str = "ecdsa-secp256k1"  # issue 16: the key's scheme (public key 32 bytes for ed25519)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (bytes as hex)."""
        return {
            "key_id": self.key_id.hex(), "public_key": self.public_key.hex(), "label": self.label,
            "threshold": self.threshold, "epoch": self.epoch, "committee": list(self.committee),
            "config_version": self.config_version, "quorum": self.quorum, "officers": list(self.officers),
            "roster_versions": list(self.roster_versions), "created_ms": self.created_ms, "digest": self.digest.hex(),
        } | ({"scheme": self.scheme} if self.scheme != "ecdsa-secp256k1" else {})


def _node_of(subject: str | None) -> int | None:
    m = _SUBJECT_NODE.fullmatch(subject or "")
    return int(m.group(1)) if m else None


def config_of(bundle: BackupBundle) -> RecoveryConfig:
    """The recovery configuration the bundle's parts were made for (no check: see verify_bundle)."""
    return bundle.config.change.config


def verify_bundle(bundle: BackupBundle, admins: AdminSet) -> BundleSummary:
    """Check ``bundle`` publicly (no decryption) against the verifier's own ``admins``.

    Returns its :class:`BundleSummary`; raises :class:`BundleError` naming the field and the node
    or officer at fault (see the module docstring for the checks).
    """
    try:
        config = bundle.check_structure(admins)
    except GovernanceError as e:
        raise BundleError(e.field, escape(e.reason), node=_node_of(e.subject)) from None
    key = bundle.key
    try:  # issue 16: in the key's group (mpcnet.common.key_group); ECDSA keys as before
        check_key_public(key)
    except DecodeError as e:
        m = re.fullmatch(r"public_shares\[([0-9]+)\]", e.field)
        node = key.committee[int(m.group(1))] if m else None
        raise BundleError(f"key.{e.field}", e.reason, node=node) from None
    for i, signed in enumerate(bundle.parts):
        check_part_public(signed, key, config, f"parts[{i}]")
    return BundleSummary(
        key_id=key.key_id, public_key=key.public_key, label=key.label, threshold=key.threshold, epoch=key.epoch,
        committee=key.committee, config_version=config.version, quorum=config.quorum,
        officers=tuple(o.name for o in config.officers), roster_versions=tuple(p.part.roster_version for p in bundle.parts),
        created_ms=bundle.created_ms, digest=bundle.digest(), scheme=key.scheme,
    )


def check_part_public(signed: SignedBackupPart, key: BackupKey, config: RecoveryConfig, where: str = "part") -> None:
    """The elliptic-curve and age-structure checks of one part (its signature and digests are
    ``check_structure``'s): ``quorum`` commitments that decode, ``C_0`` the node's public share,
    one well-formed age file per officer. BundleError naming ``where.commitments[k]`` and the
    node, or ``where.pieces[j]`` and the node and officer ``j+1``."""
    p = signed.part
    if not 1 <= p.share_index <= len(key.public_shares):
        raise BundleError(f"{where}.share_index", f"is {p.share_index}, outside the key's committee", node=p.node)
    try:
        check_commitments(key, p.commitments, config.quorum, p.share_index)
    except DecodeError as e:
        raise BundleError(f"{where}.{e.field}", e.reason, node=p.node) from None
    if len(p.pieces) != len(config.officers):
        raise BundleError(f"{where}.pieces", f"{len(p.pieces)} pieces for {len(config.officers)} officers", node=p.node)
    for j, piece in enumerate(p.pieces):
        try:
            check_age_file(piece)
        except AgeKeyError as e:
            raise BundleError(f"{where}.pieces[{j}]", str(e), node=p.node, officer=j + 1) from None


def check_order_bundle(order: RecoveryOrder, bundle: BackupBundle) -> None:
    """Whether a (signature-verified, :func:`governance.recovery.verify_recovery_order`) recovery
    ``order`` is an order for ``bundle`` (verified by :func:`verify_bundle`): what every officer,
    node and the coordinator checks before acting on it, so that a ceremony cannot pair an order
    with another bundle, key, epoch, committee or share.

    Checks: ``key_id``, ``public_key``, ``chain_code`` and ``epoch`` are the bundle key's;
    ``bundle_digest`` is the bundle's :meth:`~governance.recovery.BackupBundle.digest`;
    ``config_version`` is the bundle's recovery configuration's; every target's share index is
    in the committee (1..n). RESTORE: each target's node is the committee member at its share
    index, and the follow-up operation starts from the bundle's committee and threshold. EXPORT:
    exactly ``threshold`` targets (the shares the off-line machine needs, no more). Raises
    :class:`BundleError` naming ``order.<field>`` (and the node, for a target).
    """
    key = bundle.key
    for name in ("key_id", "public_key", "chain_code"):
        if not hmac.compare_digest(getattr(order, name), getattr(key, name)):
            raise BundleError(f"order.{name}", "is not the bundle's key")
    if order.scheme != key.scheme:  # issue 16
        raise BundleError("order.scheme", f"is {order.scheme}, the bundle's key is a {key.scheme} key")
    if order.epoch != key.epoch:
        raise BundleError("order.epoch", f"is {order.epoch}, the bundle backs up epoch {key.epoch}")
    if not hmac.compare_digest(order.bundle_digest, bundle.digest()):
        raise BundleError("order.bundle_digest", "is not this bundle's digest (the order names another bundle)")
    config = config_of(bundle)
    if order.config_version != config.version:
        raise BundleError(
            "order.config_version", f"is {order.config_version}, the bundle was made for recovery configuration {config.version}"
        )
    n = len(key.committee)
    for i, t in enumerate(order.targets):
        if not 1 <= t.share_index <= n:
            raise BundleError(f"order.targets[{i}].share_index", f"is {t.share_index}: the key's committee has {n} members")
        if order.kind is RecoveryOrderKind.RESTORE and t.node != key.committee[t.share_index - 1]:
            raise BundleError(
                f"order.targets[{i}].node", f"share index {t.share_index} belongs to node {key.committee[t.share_index - 1]}",
                node=t.node,
            )
    if order.kind is RecoveryOrderKind.EXPORT:
        if len(order.targets) != key.threshold:
            raise BundleError("order.targets", f"{len(order.targets)} shares, an export needs exactly the threshold ({key.threshold})")
        return
    op = order.follow_up
    if op is None:  # pragma: no cover - RecoveryOrder requires it for RESTORE
        raise BundleError("order.follow_up", "missing")
    if op.old_committee != key.committee:
        raise BundleError("order.follow_up.old_committee", "is not the bundle key's committee")
    if op.old_threshold != key.threshold:
        raise BundleError("order.follow_up.old_threshold", f"is {op.old_threshold}, the key's threshold is {key.threshold}")


def ceremony_targets(
    bundle: BackupBundle,
    admins: AdminSet,
    roster_history: Sequence[SignedRosterChange],
    order: RecoveryOrder | None = None,
) -> dict[int, bytes]:
    """Where an officer may send her pieces of ``bundle`` (verified by :func:`verify_bundle`) in a
    ceremony: ``{share index: 32-byte X25519 recipient}``, from nothing the coordinator chose.

    * drill (``order`` None): every share index, to the encryption key of the committee member at
      that index in the roster in force;
    * RESTORE ``order`` (signature-verified, and :func:`check_order_bundle` is applied here): each
      target share index, to its node's encryption key in the roster in force, which must be at
      least the order's ``roster_version`` (the roster after the lost nodes were replaced);
    * EXPORT ``order``: each target share index, to the order's ``export_recipient``.

    The roster in force is the end of ``roster_history``, verified against ``admins``, which must
    extend the bundle's own roster history: a coordinator that shows a stale roster (one where a
    replaced, perhaps stolen, node still has its old encryption key) is refused as far as the
    bundle and the order can tell. BundleError naming ``roster_history``, ``order.…`` or
    ``targets[i]`` (a node not active in the roster).
    """
    if order is not None:
        check_order_bundle(order, bundle)
        if order.kind is RecoveryOrderKind.EXPORT:
            return {t.share_index: order.export_recipient for t in order.targets}
    try:
        roster = verify_roster_history(admins, roster_history)
    except GovernanceError as e:
        raise BundleError(f"roster_{e.field}" if e.field.startswith("history") else "roster_history", escape(e.reason)) from None
    known = bundle.roster_history
    if len(roster_history) < len(known) or any(
        a.to_bytes() != b.to_bytes() for a, b in zip(roster_history[: len(known)], known, strict=True)
    ):
        raise BundleError("roster_history", "does not extend the bundle's roster history (a stale or forked roster)")
    if order is not None and roster.version < order.roster_version:
        raise BundleError(
            "roster_history", f"ends at roster version {roster.version}, older than the order's {order.roster_version} (stale roster)"
        )
    committee = bundle.key.committee
    wanted = (
        {s: committee[s - 1] for s in range(1, len(committee) + 1)} if order is None
        else {t.share_index: t.node for t in order.targets}
    )
    out: dict[int, bytes] = {}
    for share_index, node in wanted.items():
        entry = roster.entry(node)
        if entry is None or not entry.active:
            raise BundleError(
                f"targets[{share_index}]", f"node {node} is not an active node of roster version {roster.version}", node=node
            )
        out[share_index] = entry.encryption_key
    return out


def assemble_bundle(
    key: BackupKey,
    config_change: SignedRecoveryConfigChange,
    roster_history: Sequence[SignedRosterChange],
    parts: Sequence[SignedBackupPart],
    created_ms: int,
) -> BackupBundle:
    """The bundle of ``parts`` (one per committee member, any order; stored by share index).

    ``roster_history`` is the roster chain from version 1; it is cut after the newest roster
    version a part names (the prefix that checks every part's signature). The governance root is
    the configuration change's. Raises :class:`BundleError` when a part is missing, doubled or
    for another key/epoch (the full check is :func:`verify_bundle`).
    """
    n = len(key.committee)
    by_index: dict[int, SignedBackupPart] = {}
    for sp in parts:
        p = sp.part
        if p.key_id != key.key_id or p.epoch != key.epoch:
            raise BundleError("parts", f"the part of node {p.node} is for another key or epoch", node=p.node)
        if not 1 <= p.share_index <= n:
            raise BundleError("parts", f"the part of node {p.node} is for share index {p.share_index}, outside the committee (1..{n})",
                              node=p.node)
        if p.share_index in by_index:
            raise BundleError("parts", f"two parts for share index {p.share_index}", node=p.node)
        by_index[p.share_index] = sp
    missing = [s for s in range(1, n + 1) if s not in by_index]
    if missing:
        raise BundleError("parts", f"no part for share index {missing[0]}", node=key.committee[missing[0] - 1])
    newest = max(sp.part.roster_version for sp in by_index.values())
    history = tuple(roster_history)
    for pos, h in enumerate(history):
        if h.change.new_roster.version == newest:
            history = history[: pos + 1]
            break
    try:
        return BackupBundle(
            BUNDLE_FORMAT_VERSION, config_change.change.governance_root, key, config_change, history,
            tuple(by_index[s] for s in range(1, n + 1)), created_ms,
        )
    except GovernanceError as e:
        raise BundleError(e.field, escape(e.reason), node=_node_of(e.subject)) from None


def read_bundle(data: bytes) -> BackupBundle:
    """Decode a bundle file (strict); BundleError naming the field (``format_version`` for a
    version this software does not read)."""
    try:
        return BackupBundle.from_file(data)
    except GovernanceError as e:
        raise BundleError(e.field, escape(e.reason), node=_node_of(e.subject)) from None


__all__ = [
    "BundleError", "BundleSummary", "assemble_bundle", "ceremony_targets", "check_order_bundle", "check_part_public", "config_of",
    "read_bundle", "verify_bundle",
]
