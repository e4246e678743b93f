"""A node's checks of a refresh/reshare session against its own state (design section 3).

:func:`check_reshare` decides whether this node takes part in ``StartSession(reshare=...)``:
the operation must decode, be authorized against the node's *own* admin set and roster in force
(:func:`governance.keyop.check_authorized`), name the key exactly as the node holds it (id,
public key, chain code, epoch, threshold, committee; a joining node checks
``compute_key_id(public_key, chain_code) == key_id``), and the dealers must be old-committee
members, increasing, at least the old threshold, all active. A node holding no share of the key
(no record of it: a joining node, or an old-committee member that was wiped or replaced) takes
part only as a receiver, never as a dealer (a refresh, dealt by the whole committee, is then
refused). It returns the
:class:`ReshareSetup` (with the :class:`crypto_core.reshare.ReshareConfig`: party ids are
roster indices, share indices are committee positions). Errors are :class:`RpcError` naming
``reshare.<field>`` (``reshare.operation.<field>`` for the operation's own fields).

A FROST key (issue 16; the operation's ``scheme`` is ``ed25519`` or
``schnorr-secp256k1-bip340``, a governance KeyOperation v2) is checked the same way, its id being
``frost_key_id(scheme, public_key)`` and its public key a valid element of the scheme's group; the
node's share must be of that scheme, and the setup carries a
:class:`crypto_core.frost.reshare.FrostReshareConfig` (same roles and indices, no chain code).

:func:`state_digest` (:func:`governance.keyop.epoch_state_digest`, shared with the coordinator) is
the epoch receipt's ``state_digest``; a FROST share's is the scheme's variant (its own tag, the
scheme, the group key and public shares' encodings, length-prefixed, no chain code).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from crypto_core.errors import DecodeError, UsageError
from crypto_core.frost.keyshare import FrostKeyShare
from crypto_core.frost.public import frost_key_id, scheme_group
from crypto_core.frost.reshare import FrostReshareConfig
from crypto_core.group import Point
from crypto_core.keyshare import KeyShare, compute_key_id
from crypto_core.params import LAMBDA_C
from crypto_core.reshare import ReshareConfig
from governance.errors import GovernanceError
from governance.keyop import (
    EpochReceipt,
    KeyOperation,
    KeyOpKind,
    SignedKeyOperation,
    check_authorized,
    epoch_state_digest,
    refresh_due,
)
from governance.policy import AdminSet
from governance.roster import MAX_INDEX, Roster, SignedRosterChange, active_entries
from mpc_node.epoch_store import KeyEpoch
from mpcnet.common.rpc import RpcError, invalid

if TYPE_CHECKING:
    from crypto_core.backup import RecoveredShare

Code = grpc.StatusCode
NO_ROSTER = "this node has no signed roster (config roster_history)"


@dataclass(frozen=True)
class ReshareSetup:
    """What this node runs: the operation, how it is authorized, the dealers, its roles."""

    signed: SignedKeyOperation
    authorized_by: str  # "admin-quorum" | "roster" | "schedule" | "recovery-order"
    dealers: tuple[int, ...]
    config: ReshareConfig | FrostReshareConfig  # issue 16: a FROST key's (op.scheme) runs FrostReshareParty
    dealer: bool
    receiver: bool

    @property
    def operation(self) -> KeyOperation:
        return self.signed.operation

    @property
    def participants(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.dealers) | set(self.operation.new_committee)))


@dataclass(frozen=True)
class RefreshSchedule:
    """This node's own view of a key's refresh schedule: its policy's ``period_s``
    (``KeyPolicy.refresh_period_s``; 0: none) and the age of its current share, ``age_ms``
    (its clock now minus ``KeyEpoch.changed_ms``)."""

    period_s: int
    age_ms: int

    @property
    def due(self) -> bool:
        """:func:`governance.keyop.refresh_due` on this node's own record and clock."""
        return refresh_due(self.period_s, 0, self.age_ms)

    def why_not(self) -> str:
        """Why an unsigned refresh is not due (for the refusal)."""
        if self.period_s <= 0:
            return "the key's policy here has no refresh_period_s"
        return f"not due: the share is {max(self.age_ms, 0) // 1000} s old, the policy's period is {self.period_s} s"


state_digest = epoch_state_digest  # the one definition is governance.keyop's (the coordinator checks it too)


def receipt_for(
    share: KeyShare | FrostKeyShare, op: KeyOperation, session_id: bytes, holder: int, governance_root: bytes
) -> EpochReceipt:
    """The (unsigned) epoch receipt of a receiver's new ``share``. A FROST share (issue 16): its
    state digest is the FROST variant of :func:`governance.keyop.epoch_state_digest` over the
    scheme, group key and public shares (what the coordinator records for the new epoch: it
    recomputes this digest from ``ReshareResult.public_shares``)."""
    if isinstance(share, FrostKeyShare):
        digest = state_digest(share.public_key, b"", share.threshold, op.new_committee, share.public_shares, share.scheme)
    else:
        pub = [s.encode() for s in share.public_shares]
        digest = state_digest(share.public_key.encode(), share.chain_code, share.threshold, op.new_committee, pub)
    return EpochReceipt(
        governance_root, op.key_id, op.digest(), session_id, op.new_epoch, op.new_threshold, op.new_committee, digest, holder
    )


def _gov(e: GovernanceError, code: grpc.StatusCode) -> RpcError:
    return RpcError(code, f"reshare.operation.{e.field}: {e.reason}" if e.field else f"reshare.operation: {e.reason}")


def check_reshare(
    operation: bytes,
    dealers: Sequence[int],
    key_label: bytes,
    *,
    session_id: bytes,
    me: int,
    admins: AdminSet,
    roster: Roster | None,
    held: KeyEpoch | None,
    share: KeyShare | FrostKeyShare | RecoveredShare | None,
    schedule: RefreshSchedule | None = None,
    committee_roster_version: int | None = None,
    joined: Mapping[int, int] | None = None,
    ordered: bool = False,
) -> ReshareSetup:
    """Check a reshare request against this node's own state (see the module).

    ``held``: the node's record of the key (None: it has none, and then takes part as a receiver
    only, even when the old committee names it (wiped or replaced); a node that left the committee
    earlier joins again like a new one); ``share``: its active share (None if it holds none).
    ``schedule``: the node's own refresh schedule of the key (None: it holds no active share or
    no policy; an unsigned refresh is then never due). An unsigned refresh that is not due is
    refused PERMISSION_DENIED naming ``reshare.operation.signatures`` with the share's age and
    the period.
    ``key_label``: the key's label (hashed into the session's configuration; a holder's share
    must carry the same). ``committee_roster_version``: the roster version of the operation
    that set the key's committee here (None: unknown, a DKG key); ``joined``: roster index ->
    the roster version that first named it (:func:`joined_versions`). An unsigned
    roster-implied reshare may then add only nodes that joined after that version (a roster
    change implies it; an admin's choice of committee at that version is not undone without
    admin signatures). ``ordered``: the operation is the follow-up of a recovery order this node
    verified and installed (issue 12; an unsigned one is then authorized ``"recovery-order"``), and
    ``share`` may be a ``crypto_core.backup.RecoveredShare`` of that order. Raises RpcError:
    INVALID_ARGUMENT (malformed operation or
    dealers), PERMISSION_DENIED (not authorized), FAILED_PRECONDITION (disagrees with this
    node's key state or roster).
    """
    if not operation:
        raise invalid("reshare.operation", "missing: a canonical SignedKeyOperation")
    try:
        signed = SignedKeyOperation.from_bytes(operation)
    except GovernanceError as e:
        raise _gov(e, Code.INVALID_ARGUMENT) from None
    op = signed.operation
    if roster is None:
        raise RpcError(Code.FAILED_PRECONDITION, f"reshare.operation: {NO_ROSTER}")
    due = schedule is not None and schedule.due
    try:
        how = check_authorized(signed, admins, roster, scheduled=due, ordered=ordered)
    except GovernanceError as e:
        code = Code.PERMISSION_DENIED if e.field.startswith("signatures") else Code.FAILED_PRECONDITION
        if e.field == "signatures" and not signed.signatures and op.kind is KeyOpKind.REFRESH:
            why = schedule.why_not() if schedule is not None else "this node holds no active share of the key to refresh"
            raise RpcError(code, f"reshare.operation.signatures: missing, and no scheduled refresh is due here ({why})") from None
        raise _gov(e, code) from None
    if how == "roster" and committee_roster_version is not None:
        _check_implied(op, committee_roster_version, joined or {})
    frost = op.scheme != "ecdsa-secp256k1"  # issue 16: a FROST key (governance KeyOperation v2)
    pk: Point | None = None
    if frost:
        try:
            scheme_group(op.scheme, "reshare.operation.scheme").decode(op.public_key, "reshare.operation.public_key")
        except (DecodeError, UsageError):
            raise invalid("reshare.operation.public_key", f"is not a valid {op.scheme} group key") from None
        if frost_key_id(op.scheme, op.public_key) != op.key_id:
            raise invalid("reshare.operation.key_id", "is not the id of scheme and public_key")
    else:
        try:
            pk = Point.decode(op.public_key)
        except (DecodeError, ValueError):
            raise invalid("reshare.operation.public_key", "is not a point of secp256k1") from None
        if compute_key_id(pk, op.chain_code) != op.key_id:
            raise invalid("reshare.operation.key_id", "is not the id of public_key and chain_code")
    if share is not None and isinstance(share, FrostKeyShare) != frost:
        held_scheme = share.scheme if isinstance(share, FrostKeyShare) else "ecdsa-secp256k1"
        raise RpcError(Code.FAILED_PRECONDITION, f"reshare.operation.scheme: is {op.scheme}, this node's share is of a {held_scheme} key")
    if isinstance(share, FrostKeyShare) and share.scheme != op.scheme:
        raise RpcError(Code.FAILED_PRECONDITION, f"reshare.operation.scheme: is {op.scheme}, this node's share is of a {share.scheme} key")
    _check_key(op, me, held, share)
    if share is not None and share.key_label != key_label:
        raise RpcError(Code.FAILED_PRECONDITION, "reshare.key_label: differs from the label of this node's share of the key")
    dl = _check_dealers(op, dealers, roster)
    dealer, receiver = me in dl, me in op.new_committee
    if not (dealer or receiver):
        raise RpcError(Code.FAILED_PRECONDITION, f"reshare.dealers: node {me} is neither a dealer nor in the new committee")
    if dealer and share is None:
        raise RpcError(
            Code.FAILED_PRECONDITION,
            f"reshare.dealers: node {me} holds no share of key {op.key_id.hex()[:16]} at epoch {op.old_epoch} to deal"
            " (a node without one, e.g. wiped or replaced, only receives)",
        )
    if frost:
        assert share is None or isinstance(share, FrostKeyShare)
        return ReshareSetup(signed, how, dl, _frost_config(op, session_id, me, dl, key_label, share), dealer, receiver)
    assert pk is not None and not isinstance(share, FrostKeyShare)
    try:
        config = ReshareConfig(
            session_id, me,
            tuple((d, op.share_index(d, new=False)) for d in dl),
            tuple((r, k) for k, r in enumerate(op.new_committee, 1)),
            op.old_threshold, op.new_threshold, pk, op.chain_code, op.old_epoch,
            key_label=key_label,
            refresh=op.kind is KeyOpKind.REFRESH,
            old_public_shares=share.public_shares if share is not None else None,
            lambda_c=share.lambda_c if isinstance(share, KeyShare) else LAMBDA_C,
        )
    except UsageError as e:
        raise RpcError(Code.FAILED_PRECONDITION, f"reshare: {e}") from None
    return ReshareSetup(signed, how, dl, config, dealer, receiver)


def _frost_config(
    op: KeyOperation, session_id: bytes, me: int, dealers: tuple[int, ...], key_label: bytes, share: FrostKeyShare | None
) -> FrostReshareConfig:
    """The :class:`FrostReshareConfig` of a FROST key's operation (issue 16), as the ECDSA one:
    party ids are roster indices, share indices committee positions; the old public shares come
    from this node's own share (None for a node without one: a joining receiver)."""
    try:
        return FrostReshareConfig(
            session_id, me,
            tuple((d, op.share_index(d, new=False)) for d in dealers),
            tuple((r, k) for k, r in enumerate(op.new_committee, 1)),
            op.old_threshold, op.new_threshold, op.scheme, op.public_key, op.old_epoch,
            key_label=key_label,
            refresh=op.kind is KeyOpKind.REFRESH,
            old_public_shares=share.public_shares if share is not None else None,
        )
    except UsageError as e:
        raise RpcError(Code.FAILED_PRECONDITION, f"reshare: {e}") from None


def joined_versions(history: Sequence[bytes]) -> dict[int, int]:
    """Roster index -> the first roster version naming it, from the canonical
    :class:`governance.roster.SignedRosterChange` history (version 1 first, already verified)."""
    out: dict[int, int] = {}
    for raw in history:
        roster = SignedRosterChange.from_bytes(raw).change.new_roster
        for e in roster.entries:
            out.setdefault(e.index, roster.version)
    return out


def anchor_after(op: KeyOperation, authorized_by: str, anchor: int | None) -> int:
    """The roster version to record as the one that set the key's committee once ``op`` commits
    (0: unknown, as a DKG key's), given the key's current ``anchor`` here. An operation no admin
    signed that adds nobody (a roster-implied reshare dropping revoked nodes, a scheduled
    refresh) chooses no committee: it keeps ``anchor``, so a roster-implied reshare to a node
    added before it (a follow that failed while the node was down, then interrupted by a
    revocation) stays possible. Any other operation sets ``op.roster_version``."""
    if authorized_by in ("roster", "schedule") and not op.joining:
        return anchor or 0
    return op.roster_version


def _check_implied(op: KeyOperation, anchor: int, joined: Mapping[int, int]) -> None:
    """An unsigned reshare adds only nodes a roster change added after ``anchor`` (the roster
    version whose operation set the key's committee)."""
    for j in op.joining:
        if joined.get(j, 0) <= anchor:
            raise RpcError(
                Code.PERMISSION_DENIED,
                f"reshare.operation.signatures: missing: node {j} was in the roster (version {joined.get(j, 0)}) when the"
                f" key's committee was set at roster version {anchor}; no roster change adds it, admin signatures are needed",
            )


def _check_key(op: KeyOperation, me: int, held: KeyEpoch | None, share: KeyShare | FrostKeyShare | RecoveredShare | None) -> None:
    def refuse(field: str, reason: str) -> RpcError:
        return RpcError(Code.FAILED_PRECONDITION, f"reshare.operation.{field}: {reason}")

    if held is None:
        # no record of the key here: a joining node, or an old-committee member that lost its
        # share (wiped, or a replaced host with an empty store). Either takes part as a receiver
        # only (it learns the key from the authorized operation, checked against compute_key_id);
        # check_reshare refuses it as a dealer.
        return
    if held.public_key != op.public_key:
        raise refuse("public_key", f"differs from the key {op.key_id.hex()[:16]} this node holds")
    if held.status == "left":  # it left the committee earlier: it joins again like a new node
        if me in op.old_committee:
            raise refuse("old_committee", f"names node {me}, which left the committee of key {op.key_id.hex()[:16]}")
        return
    if held.status != "active":
        raise refuse("key_id", f"key {op.key_id.hex()[:16]} is {held.status} on this node")
    if share is not None and not isinstance(share, FrostKeyShare) and share.chain_code != op.chain_code:
        raise refuse("chain_code", "differs from this node's share")
    if op.old_epoch != held.epoch:
        raise refuse("old_epoch", f"is {op.old_epoch}, the key's active epoch here is {held.epoch}")
    if op.old_committee != held.committee:
        raise refuse("old_committee", f"is {list(op.old_committee)}, the key's committee here is {list(held.committee)}")
    if op.old_threshold != held.threshold:
        raise refuse("old_threshold", f"is {op.old_threshold}, the key's threshold here is {held.threshold}")
    if share is not None and me not in op.old_committee:
        raise refuse("old_committee", f"does not name node {me}, which holds a share of the key")
    if share is not None and share.index != op.share_index(me, new=False):
        raise refuse("old_committee", f"puts node {me} at share index {op.share_index(me, new=False)}, its share has {share.index}")


def _check_dealers(op: KeyOperation, dealers: Sequence[int], roster: Roster) -> tuple[int, ...]:
    if len(dealers) > MAX_INDEX:
        raise invalid("reshare.dealers", f"at most {MAX_INDEX} roster indices")
    dl = tuple(int(d) for d in dealers)
    if list(dl) != sorted(set(dl)):
        raise invalid("reshare.dealers", "must be distinct roster indices in increasing order")
    outside = [d for d in dl if d not in op.old_committee]
    if outside:
        raise invalid("reshare.dealers", f"node {outside[0]} is not in the old committee")
    if len(dl) < op.old_threshold:
        raise invalid("reshare.dealers", f"{len(dl)} dealer(s); the old threshold needs at least {op.old_threshold}")
    if op.kind is KeyOpKind.REFRESH and dl != op.old_committee:
        raise invalid("reshare.dealers", "a refresh is dealt by the whole committee")
    active = {e.index for e in active_entries(roster)}
    gone = [d for d in dl if d not in active]
    if gone:
        raise RpcError(Code.FAILED_PRECONDITION, f"reshare.dealers: node {gone[0]} is not active in roster version {roster.version}")
    return dl
