"""Key lifecycle in the client SDK (issue 11): the node roster, roster changes, key operations
(refresh, reshare) and operational key rotation, mixed into :class:`mpcnet.client.MpcClient`.

The coordinator is untrusted: every answer is checked against what the client knows itself.

- :meth:`LifecycleMixin.roster` verifies the whole roster history
  (:func:`governance.roster.verify_roster_history`) against the client's *own* admin set (from
  its cluster.json) and refuses a history that does not extend the one it verified before
  (a rollback) with DATA_LOSS.
- Every :class:`~governance.keyop.KeyOperation` the client builds takes the key's public data
  from ``GetKey`` and checks it: ``key_id`` must be ``compute_key_id(public_key, chain_code)``
  (a FROST key's, issue 16: ``frost_key_id(scheme, public_key)``, no chain code; its operation
  is a KeyOperation v2 naming the scheme),
  and the public key and chain code must equal the ones this client saw before for that key id;
  old epoch, threshold and committee come from the key record, the roster version from the
  verified roster, and the new committee must be active nodes of it.
- :meth:`LifecycleMixin.approve_lifecycle` fetches the proposal and, before signing, checks that
  it is the one named, for this cluster (governance root), that it still applies (a roster change
  must extend the verified roster; a key operation must match the key as above) and, given
  ``expect_digest``, that it is exactly the change the caller reviewed; otherwise nothing is
  signed (FAILED_PRECONDITION, or DATA_LOSS for a malformed answer).

Errors are :class:`~mpcnet.client.errors.MpcError` whose message starts with the field.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from crypto_core.errors import DecodeError, UsageError
from crypto_core.group import Point
from crypto_core.keyshare import compute_key_id
from governance.errors import GovernanceError
from governance.keyop import KeyOperation, KeyOpKind, SignedKeyOperation, check_committee, sign_key_operation
from governance.policy import AdminSet, AdminSignature
from governance.roster import (
    NodeStatus,
    Roster,
    RosterChange,
    RosterEntry,
    SignedRosterChange,
    active_entries,
    add_node,
    revoke_node,
    rotate_keys,
    rotation_proof_message,
    sign_roster_change,
    verify_roster_history,
)
from governance.text import quote
from mpcnet.client import recovery_proposals as recovery
from mpcnet.client.errors import MpcError
from mpcnet.client.nodecert import NodeCsrError, pem_fingerprint, sign_node_csr
from mpcnet.common.pki import CertPaths
from mpcnet.wire.mpc.v1 import coordinator_pb2, coordinator_pb2_grpc, node_pb2, node_pb2_grpc

if TYPE_CHECKING:
    from mpcnet.client.identities import Identity
    from mpcnet.client.sdk import Key

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")

PROPOSAL_STATES = ("pending", "applied", "superseded")
OPERATION_STATES = ("running", "committing", "done", "failed")
OPERATION_TERMINAL = ("done", "failed")
_PROPOSAL_STATE = {v: k.removeprefix("PROPOSAL_STATE_").lower() for k, v in coordinator_pb2.ProposalState.items()}
_POLL_S = (0.2, 2.0)  # wait_key_operation: first and longest pause between polls
_NO_ANSWER = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# wait_key_operation retries these once the coordinator has answered (it is restarting or busy)
_OPERATION_WAIT_RETRY = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED, grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
})


def _data_loss(message: str) -> MpcError:
    return MpcError(grpc.StatusCode.DATA_LOSS, message)


def _refused(message: str) -> MpcError:
    """A proposal the client will not sign (or build): nothing was signed."""
    return MpcError(grpc.StatusCode.FAILED_PRECONDITION, f"{message}; nothing was signed")


def _bad_arg(message: str) -> MpcError:
    return MpcError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _signers(admins: AdminSet | None, message: bytes, signatures: Sequence[AdminSignature]) -> tuple[str, ...] | None:
    """Admins whose signature over ``message`` verifies against ``admins`` (each once), or None
    without an admin set."""
    if admins is None:
        return None
    out: list[str] = []
    for s in signatures:
        key = admins.admins.get(s.admin)
        if key is None or s.admin in out:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(s.signature, message)
        except (InvalidSignature, ValueError):
            continue
        out.append(s.admin)
    return tuple(out)


# --- views -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RosterView:
    """The roster history as the coordinator reports it, verified against the client's admin set:
    ``roster`` is the one in force (the last), ``history`` every signed change, version 1 first."""

    roster: Roster
    history: tuple[SignedRosterChange, ...]

    @property
    def version(self) -> int:
        return self.roster.version

    def active(self) -> tuple[int, ...]:
        return tuple(e.index for e in active_entries(self.roster))

    def revoked(self) -> tuple[int, ...]:
        return tuple(e.index for e in self.roster.entries if not e.active)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.roster.version, "epoch": self.roster.epoch, "digest": self.roster.digest().hex(),
            "active": list(self.active()), "revoked": list(self.revoked()),
            "entries": [e.to_dict() for e in self.roster.entries], "changes": len(self.history),
        }


def describe_roster_change(prev: Roster | None, new: Roster) -> list[str]:
    """One line per entry that ``new`` changes relative to ``prev``: ``add node 6 (node-6)``,
    ``revoke node 3 (node-3)``, ``rotate keys of node 2 (node-2) to key version 2``,
    ``move node 4 (node-4) to HOST:PORT``. Names are roster names (:data:`governance.text.NAME_RE`)."""
    out: list[str] = []
    for e in new.entries:
        old = None if prev is None else prev.entry(e.index)
        who = f"node {e.index} ({e.name})"
        if old is None:
            out.append(f"add {who} at {e.endpoint}")
        elif old.active and not e.active:
            out.append(f"revoke {who}")
        else:
            if e.keys() != old.keys():
                out.append(f"rotate keys of {who} to key version {e.key_version}")
            if e.endpoint != old.endpoint:
                out.append(f"move {who} to {e.endpoint}")
    return out


@dataclass(frozen=True)
class LifecycleProposalView:
    """A roster change or key operation proposal, its admin signatures verified against the
    client's admin set (``verified_signers``; None without one). ``digest`` is the SHA-256 of the
    canonical change or operation (what ``--expect-digest`` names); ``operations`` the key
    operations an applied proposal started."""

    proposal_id: str
    kind: str  # "roster" | "key-operation" | "recovery-config" | "recovery-order"
    state: str  # pending | applied | superseded
    signed: SignedRosterChange | SignedKeyOperation | recovery.RecoverySigned
    proposer: str
    admin_quorum: int
    created_unix_ms: int
    updated_unix_ms: int
    operations: tuple[str, ...]
    error: str
    verified_signers: tuple[str, ...] | None

    @property
    def digest(self) -> bytes:
        if isinstance(self.signed, SignedRosterChange):
            return self.signed.change.digest()
        if isinstance(self.signed, SignedKeyOperation):
            return self.signed.operation.digest()
        return recovery.digest(self.signed)

    def as_dict(self) -> dict[str, Any]:
        listed = [s.admin for s in self.signed.signatures]
        verified = list(self.verified_signers or ())
        d: dict[str, Any] = {
            "proposal_id": self.proposal_id, "kind": self.kind, "state": self.state, "digest": self.digest.hex(),
            "proposer": self.proposer, "signed_by": verified, "signatures_verified": self.verified_signers is not None,
            "unverified_signers": [n for n in listed if n not in verified], "admin_quorum": self.admin_quorum,
            "created_unix_ms": self.created_unix_ms, "updated_unix_ms": self.updated_unix_ms,
            "operations": list(self.operations), "error": self.error,
        }
        if isinstance(self.signed, SignedRosterChange):
            d["roster"] = self.signed.change.new_roster.to_dict()
        elif isinstance(self.signed, SignedKeyOperation):
            d["operation"] = self.signed.operation.to_dict()
        else:
            d.update(recovery.as_dict(self.signed))
        return d


@dataclass(frozen=True)
class KeyOperationView:
    """One key operation (``KeyOperationStatus``), checked: its signed operation decodes, its id
    is the operation's proposal id and every field the coordinator repeats equals the operation's."""

    operation_id: str
    operation: KeyOperation
    state: str  # running | committing | done | failed
    authorized_by: str  # admin-quorum | roster | schedule
    error: str
    pending_nodes: tuple[int, ...]
    attempts: int
    created_unix_ms: int
    updated_unix_ms: int

    @property
    def finished(self) -> bool:
        return self.state in OPERATION_TERMINAL

    def as_dict(self) -> dict[str, Any]:
        op = self.operation
        return {
            "operation_id": self.operation_id, "key_id": op.key_id.hex(), "kind": op.kind.name.lower(), "state": self.state,
            "old_epoch": op.old_epoch, "new_epoch": op.new_epoch, "old_threshold": op.old_threshold,
            "new_threshold": op.new_threshold, "old_committee": list(op.old_committee), "new_committee": list(op.new_committee),
            "roster_version": op.roster_version, "reason": op.reason, "authorized_by": self.authorized_by, "error": self.error,
            "pending_nodes": list(self.pending_nodes), "attempts": self.attempts,
            "created_unix_ms": self.created_unix_ms, "updated_unix_ms": self.updated_unix_ms,
        }

    @staticmethod
    def from_proto(s: coordinator_pb2.KeyOperationStatus) -> KeyOperationView:
        """DATA_LOSS naming the field for anything that does not match the signed operation."""
        try:
            signed = SignedKeyOperation.from_bytes(bytes(s.signed_operation))
        except GovernanceError as e:
            raise _data_loss(f"operation.signed_operation.{e.field}: {e.reason} (the coordinator sent a malformed operation)") from None
        op = signed.operation
        if s.operation_id != op.proposal_id:
            raise _data_loss(f"operation.operation_id: {quote(s.operation_id)} is not the id of its signed operation ({op.proposal_id})")
        repeated = {
            "key_id": (bytes(s.key_id), op.key_id), "kind": (s.kind, op.kind.name.lower()),
            "old_epoch": (s.old_epoch, op.old_epoch), "new_epoch": (s.new_epoch, op.new_epoch),
            "old_committee": (tuple(s.old_committee), op.old_committee), "new_committee": (tuple(s.new_committee), op.new_committee),
            "old_threshold": (s.old_threshold, op.old_threshold), "new_threshold": (s.new_threshold, op.new_threshold),
        }
        for name, (said, signed_value) in repeated.items():
            if said != signed_value:
                raise _data_loss(f"operation.{name}: differs from the signed operation {op.proposal_id}")
        if s.state not in OPERATION_STATES:
            raise _data_loss(f"operation.state: unknown state {quote(s.state)}")
        return KeyOperationView(
            s.operation_id, op, s.state, s.authorized_by, s.error, tuple(s.pending_nodes), s.attempts,
            s.created_unix_ms, s.updated_unix_ms,
        )


@dataclass(frozen=True)
class StagedRotation:
    """What a node staged for a key rotation (``PrepareKeyRotationResponse``): node ``index`` and
    ``name``, the staged Ed25519 identity and X25519 encryption public keys (32 bytes each), the
    CSR (PEM) for the staged TLS key and the proof (64 bytes): the node's *current* identity
    key's signature over :func:`governance.roster.rotation_proof_message`."""

    index: int
    name: str
    identity_public: bytes
    encryption_public: bytes
    csr_pem: bytes
    proof: bytes

    def verify(self, entry: RosterEntry) -> None:
        """DATA_LOSS unless the proof verifies under ``entry``'s (current) identity key."""
        try:
            message = rotation_proof_message(self.identity_public, self.encryption_public, self.csr_pem)
            Ed25519PublicKey.from_public_bytes(entry.identity_key).verify(self.proof, message)
        except (InvalidSignature, ValueError, GovernanceError):
            raise _data_loss(
                f"proof: the staged keys are not signed by node {self.index}'s current identity key (not made by the node)"
            ) from None


# --- the mixin ---------------------------------------------------------------------------------


class LifecycleMixin:
    """Key lifecycle methods of :class:`mpcnet.client.MpcClient` (see the module docstring)."""

    if TYPE_CHECKING:
        _stub: coordinator_pb2_grpc.CoordinatorStub
        admin_set: AdminSet | None
        node_endpoints: dict[str, str]

        def _call(self, method: grpc.UnaryUnaryMultiCallable[_Req, _Resp], req: _Req, timeout: float | None = None) -> _Resp: ...
        def _me(self) -> Identity: ...
        def get_key(self, key_id: bytes | str) -> Key: ...
        def _node_stub(self, name: str) -> node_pb2_grpc.NodeStub: ...
        def _nodes(self) -> list[str]: ...
        def check_recovery_proposal(self, p: LifecycleProposalView) -> None: ...
        def _export_quorum(self, signed: object) -> int: ...

    # state: set lazily (tests build clients with __new__)
    def _seen_roster(self) -> tuple[bytes, ...]:
        return tuple(getattr(self, "_roster_seen", ()))

    def _admins(self) -> AdminSet:
        admins: AdminSet | None = getattr(self, "admin_set", None)
        if admins is None:
            raise MpcError(grpc.StatusCode.FAILED_PRECONDITION, "admin_set: unknown (give --cluster DIR / use from_cluster): "
                           "the roster cannot be verified without the cluster's admin set")
        return admins

    # --- roster ---------------------------------------------------------------------------------
    def roster(self) -> RosterView:
        """The roster history (``GetRoster``) verified against this client's admin set; the
        roster in force is its last. DATA_LOSS if a change does not verify, the history names
        another governance root, or it does not extend the history this client verified before.
        FAILED_PRECONDITION without an admin set or when the cluster has no signed roster."""
        admins = self._admins()
        r = self._call(self._stub.GetRoster, coordinator_pb2.GetClusterRosterRequest())
        if r.governance_root and not hmac.compare_digest(bytes(r.governance_root), admins.digest()):
            raise _data_loss("roster.governance_root: not this cluster's admin set (the coordinator answered for another cluster)")
        raw = tuple(bytes(b) for b in r.signed_changes)
        if not raw:
            raise MpcError(grpc.StatusCode.FAILED_PRECONDITION, "roster: the cluster has no signed roster (config roster_history)")
        history: list[SignedRosterChange] = []
        for i, b in enumerate(raw):
            try:
                history.append(SignedRosterChange.from_bytes(b))
            except GovernanceError as e:
                raise _data_loss(f"roster.history[{i}].{e.field}: {e.reason} (the coordinator sent a malformed change)") from None
        try:
            current = verify_roster_history(admins, history)
        except GovernanceError as e:
            raise _data_loss(f"roster.{e.field}: {e.reason} (the roster history does not verify against this client's admin set)") from None
        seen = self._seen_roster()
        if raw[: len(seen)] != seen:
            raise _data_loss(
                f"roster: the coordinator reports roster version {current.version}, which does not extend version "
                f"{len(seen)} this client verified before (a rolled-back or forked roster)"
            )
        seen_chains = getattr(self, "seen_chains", None)  # kept across processes (mpcnet.client.seen)
        if seen_chains is not None:
            seen_chains.check("roster", raw, "roster")
        self._roster_seen = raw
        return RosterView(current, tuple(history))

    def _roster_proposal(self, new_roster: Roster, current: Roster) -> LifecycleProposalView:
        me, admins = self._me(), self._admins()
        change = RosterChange(new_roster, current.digest(), admins.digest())
        signed = SignedRosterChange(change, (sign_roster_change(change, me.name, me.signing_key),))
        r = self._call(self._stub.ProposeRosterChange, coordinator_pb2.ProposeRosterChangeRequest(signed_change=signed.to_bytes()))
        p = self._lifecycle_proposal(r)
        if not isinstance(p.signed, SignedRosterChange) or p.signed.change != change:
            raise _data_loss(f"proposal: the coordinator answered with proposal {p.proposal_id}, not the roster change proposed")
        return p

    def propose_roster_change(self, new_roster: Roster) -> LifecycleProposalView:
        """Propose replacing the verified roster in force with ``new_roster`` (build it with
        :func:`governance.roster.add_node`, ``revoke_node``, ``rotate_keys`` or
        ``change_endpoint``), signed with this admin's key; applied at the admin quorum."""
        view = self.roster()
        if new_roster.version != view.version + 1:
            raise _bad_arg(f"new_roster.version: must be {view.version + 1} (the roster in force is version {view.version})")
        return self._roster_proposal(new_roster, view.roster)

    def add_node(self, entry: RosterEntry) -> LifecycleProposalView:
        """Propose enrolling ``entry`` (a never-used index; ``key_version`` 1). Once applied, the
        coordinator reshares every key to the new active set (roster-implied operations)."""
        view = self.roster()
        try:
            new = add_node(view.roster, entry)
        except GovernanceError as e:
            raise _bad_arg(f"{e.field}: {e.reason}") from None
        return self._roster_proposal(new, view.roster)

    def remove_node(self, index: int) -> LifecycleProposalView:
        """Propose revoking node ``index`` (its entry stays, its keys stay refused). Once applied,
        every key is reshared without it."""
        view = self.roster()
        try:
            new = revoke_node(view.roster, index)
        except GovernanceError as e:
            raise _bad_arg(f"{e.field}: {e.reason}") from None
        if not active_entries(new):
            raise _bad_arg("index: no active node would remain")
        return self._roster_proposal(new, view.roster)

    def rotate_node_keys(self, index: int, ca_cert: CertPaths | Path, ca_key: Path | None = None) -> LifecycleProposalView:
        """Rotate node ``index``'s operational keys: the node makes and stages new identity,
        encryption and TLS keys (``PrepareKeyRotation``; directly on the node when its endpoint
        is known from cluster.json, else relayed by the coordinator), the client checks the
        node's proof (signed by its *current* identity key from the verified roster) and the CSR,
        signs the CSR with the CA ``ca``, installs the certificate on the node and proposes the
        roster change naming the three new keys. The node switches when that change is applied.
        The CA is ``ca_cert`` and ``ca_key`` (PEM files), or one :class:`CertPaths`. With an
        external CA: :meth:`stage_key_rotation`, then :meth:`finish_key_rotation`.
        """
        if isinstance(ca_cert, CertPaths):
            ca = ca_cert
        elif ca_key is None:
            raise _bad_arg("ca_key: give the CA's private key file with its certificate")
        else:
            ca = CertPaths(Path(ca_cert), Path(ca_key))
        staged = self.stage_key_rotation(index)
        try:
            cert_pem = sign_node_csr(ca, staged.csr_pem, name=staged.name)
        except NodeCsrError as e:
            raise _data_loss(f"tls_csr_pem: {e}") from None
        return self.finish_key_rotation(staged, cert_pem)

    def stage_key_rotation(self, index: int) -> StagedRotation:
        """Step 1 of a rotation: node ``index`` (active in the verified roster) stages new keys
        (``PrepareKeyRotation``, directly or relayed; calling it again replaces the staged set)
        and the client checks its proof against the node's *current* identity key. DATA_LOSS
        for a proof that does not verify; INVALID_ARGUMENT for a node that is not active."""
        view = self.roster()
        entry = view.roster.entry(index)
        if entry is None or not entry.active:
            raise _bad_arg(f"node: {index} is not an active node of roster version {view.version}")
        if entry.name in getattr(self, "node_endpoints", {}):
            prep = self._at_node(entry, self._node_stub(entry.name).PrepareKeyRotation, node_pb2.PrepareKeyRotationRequest())
        else:
            prep = self._call(self._stub.PrepareNodeKeyRotation, coordinator_pb2.PrepareNodeKeyRotationRequest(node=index))
        staged = StagedRotation(index, entry.name, bytes(prep.identity_public), bytes(prep.encryption_public),
                                bytes(prep.tls_csr_pem), bytes(prep.proof))
        staged.verify(entry)
        return staged

    def finish_key_rotation(self, staged: StagedRotation, cert_pem: bytes) -> LifecycleProposalView:
        """Steps 2-3 of a rotation: the proof of ``staged`` checked again against the verified
        roster (the node still active with the identity key that signed it), ``cert_pem`` (the
        CA-issued certificate for the staged CSR; the node checks it again) installed on the
        node, then the roster change naming the staged keys proposed."""
        view = self.roster()
        entry = view.roster.entry(staged.index)
        if entry is None or not entry.active or entry.name != staged.name:
            raise _bad_arg(f"node: {staged.index} ({quote(staged.name)}) is not an active node of roster version {view.version}")
        staged.verify(entry)
        if entry.name in getattr(self, "node_endpoints", {}):
            install = node_pb2.InstallStagedCertificateRequest(certificate_pem=cert_pem)
            inst = self._at_node(entry, self._node_stub(entry.name).InstallStagedCertificate, install)
        else:
            inst = self._call(
                self._stub.InstallNodeCertificate,
                coordinator_pb2.InstallNodeCertificateRequest(node=staged.index, certificate_pem=cert_pem),
            )
        fingerprint = pem_fingerprint(cert_pem)
        if not hmac.compare_digest(bytes(inst.tls_fingerprint), fingerprint):
            raise _data_loss("tls_fingerprint: the node reports another certificate than the one installed")
        try:
            new = rotate_keys(view.roster, staged.index, identity_key=staged.identity_public,
                              encryption_key=staged.encryption_public, tls_fingerprint=fingerprint)
        except GovernanceError as e:
            raise _data_loss(f"{e.field}: {e.reason} (the node's staged keys)") from None
        return self._roster_proposal(new, view.roster)

    def _at_node(self, entry: RosterEntry, method: grpc.UnaryUnaryMultiCallable[_Req, _Resp], req: _Req) -> _Resp:
        """``_call`` to a node directly; an error names the node (not the coordinator: the
        CLI's hints about an unreachable coordinator would mislead)."""
        try:
            return self._call(method, req)
        except MpcError as e:
            hint = " (is it running? 'mpc status' shows the nodes)" if e.code in _NO_ANSWER else ""
            raise MpcError(e.code, f"node {entry.index} ({quote(entry.name)}): {e.message}{hint}") from None

    def push_roster(self, history: Sequence[SignedRosterChange] | None = None) -> dict[str, str]:
        """Install the roster history (:meth:`roster`'s, or ``history``, verified here against
        this client's admin set) on every node of cluster.json directly, each change a node
        lacks, oldest first (each node verifies every change itself), so that a coordinator
        cannot withhold a roster change. Returns node name -> ``installed N`` / ``already`` /
        ``ahead: ...`` / ``forked: ...`` / ``error: ...`` / ``revoked, not reached: ...`` (a node
        the history revokes that did not answer: not an error)."""
        if history is None:
            hist = list(self.roster().history)
        else:
            hist = list(history)
            try:
                verify_roster_history(self._admins(), hist)
            except GovernanceError as e:
                raise _bad_arg(f"{e.field}: {e.reason}") from None
        digests = [h.change.digest() for h in hist]
        revoked = {e.name for e in hist[-1].change.new_roster.entries if not e.active}
        out: dict[str, str] = {}
        for name in self._nodes():
            stub = self._node_stub(name)
            try:
                held = stub.GetRoster(node_pb2.GetRosterRequest(), timeout=10).signed_changes
                have = [SignedRosterChange.from_bytes(bytes(b)).change.digest() for b in held]
                if len(have) > len(hist):
                    out[name] = f"ahead: holds roster version {len(have)}, this history ends at version {len(hist)}"
                    continue
                if have != digests[: len(have)]:
                    out[name] = f"forked: its roster version {len(have)} is not this history's"
                    continue
                installed = 0
                for signed in hist[len(have):]:
                    r = stub.InstallRosterChange(node_pb2.InstallRosterChangeRequest(signed_change=signed.to_bytes()), timeout=10)
                    installed += int(r.installed)
            except grpc.RpcError as e:
                # a revoked node takes part in nothing: reaching it is a courtesy, not a failure
                out[name] = f"{'revoked, not reached' if name in revoked else 'error'}: {e.code().name}: {e.details() or ''}"
                continue
            except GovernanceError as e:
                out[name] = f"error: roster: {e.field}: {e.reason}"
                continue
            out[name] = f"installed {installed}" if installed else "already"
        return out

    # --- key operations -------------------------------------------------------------------------
    def _checked_key(self, key_id: bytes | str, *, frost: bool = False) -> Key:
        """``GetKey``, checked: the id binds the public key and chain code (a FROST key's, issue
        16: the scheme and public key, no chain code), they equal what this client saw before for
        that id, and the record names an epoch and a committee. ``frost``: a FROST key is
        accepted (refresh and reshare); else (backups) it is refused FAILED_PRECONDITION."""
        key = self.get_key(key_id)
        if key.scheme != "ecdsa-secp256k1" and not frost:  # issue 16: backups of FROST keys are not supported yet
            raise MpcError(grpc.StatusCode.FAILED_PRECONDITION, f"key_id: {key.key_id.hex()} is a {key.scheme} key: backups are for"
                           " ecdsa-secp256k1 keys only for now; nothing was signed")
        if key.scheme != "ecdsa-secp256k1":
            _check_frost_key(key)
        else:
            try:
                point = Point.decode(key.public_key, "public_key")
            except UsageError as e:
                raise _data_loss(f"key.{e} (the coordinator sent a malformed key)") from None
            if not hmac.compare_digest(compute_key_id(point, key.chain_code), key.key_id):
                raise _data_loss(f"key.key_id: {key.key_id.hex()} is not the id of the public key and chain code the coordinator sent")
        known: dict[bytes, tuple[bytes, bytes]] = self.__dict__.setdefault("_key_publics", {})
        before = known.setdefault(key.key_id, (key.public_key, key.chain_code))
        if before != (key.public_key, key.chain_code):
            raise _data_loss(f"key.public_key: key {key.key_id.hex()} changed its public key or chain code")
        try:
            check_committee(key.committee, "committee")
        except GovernanceError as e:
            raise _data_loss(f"key.{e.field}: {e.reason} (the coordinator does not report the key's committee)") from None
        if not 2 <= key.threshold <= len(key.committee):
            raise _data_loss(f"key.threshold: {key.threshold} does not fit a committee of {len(key.committee)}")
        return key

    def build_key_operation(
        self, kind: KeyOpKind, key_id: bytes | str, *, threshold: int | None = None, nodes: Sequence[int] | None = None,
        reason: str = "",
    ) -> KeyOperation:
        """The :class:`KeyOperation` for ``key_id`` from its checked record and the verified
        roster: a refresh keeps committee and threshold; a reshare goes to ``nodes`` (roster
        indices, any order; default: the key's committee) with ``threshold`` (default: the key's).
        INVALID_ARGUMENT naming the field for a committee or threshold the roster does not allow."""
        key = self._checked_key(key_id, frost=True)
        view = self.roster()
        committee = key.committee
        if kind is KeyOpKind.REFRESH:
            if threshold is not None or nodes is not None:
                raise _bad_arg("kind: a refresh keeps the committee and threshold (use a reshare)")
            new_committee, new_threshold = committee, key.threshold
        else:
            new_committee = committee if nodes is None else tuple(sorted(set(nodes)))
            if nodes is not None and len(new_committee) != len(nodes):
                raise _bad_arg("nodes: a node appears twice")
            new_threshold = key.threshold if threshold is None else threshold
        active = set(view.active())
        absent = [i for i in new_committee if i not in active]
        if absent:
            raise _bad_arg(f"nodes: node {absent[0]} is not an active node of roster version {view.version}")
        dealers = [i for i in committee if i in active]
        if len(dealers) < key.threshold:
            raise _bad_arg(
                f"key: only {len(dealers)} of the key's committee are active, fewer than its threshold {key.threshold}"
            )
        try:
            return KeyOperation(
                self._admins().digest(), secrets.token_bytes(16), kind, key.key_id, key.public_key, key.chain_code,
                key.epoch, key.threshold, committee, new_threshold, new_committee, view.version, reason, scheme=key.scheme,
            )
        except GovernanceError as e:
            name = {"new_committee": "nodes", "new_threshold": "threshold"}.get(e.field, e.field)
            raise _bad_arg(f"{name}: {e.reason}") from None

    def propose_key_operation(self, operation: KeyOperation) -> LifecycleProposalView:
        """Propose ``operation`` signed with this admin's key (see :meth:`build_key_operation`)."""
        me = self._me()
        signed = SignedKeyOperation(operation, (sign_key_operation(operation, me.name, me.signing_key),))
        r = self._call(self._stub.ProposeKeyOperation, coordinator_pb2.ProposeKeyOperationRequest(signed_operation=signed.to_bytes()))
        p = self._lifecycle_proposal(r)
        if not isinstance(p.signed, SignedKeyOperation) or p.signed.operation != operation:
            raise _data_loss(f"proposal: the coordinator answered with proposal {p.proposal_id}, not the key operation proposed")
        return p

    def refresh_key(self, key_id: bytes | str, reason: str = "") -> LifecycleProposalView:
        """Propose a refresh of ``key_id`` (same committee and threshold, new shares)."""
        return self.propose_key_operation(self.build_key_operation(KeyOpKind.REFRESH, key_id, reason=reason))

    def reshare_key(self, key_id: bytes | str, threshold: int, nodes: Sequence[int], reason: str = "") -> LifecycleProposalView:
        """Propose resharing ``key_id`` to ``threshold``-of-``nodes`` (roster indices)."""
        op = self.build_key_operation(KeyOpKind.RESHARE, key_id, threshold=threshold, nodes=nodes, reason=reason)
        return self.propose_key_operation(op)

    # --- proposals ------------------------------------------------------------------------------
    def _lifecycle_proposal(self, r: coordinator_pb2.LifecycleProposal) -> LifecycleProposalView:
        signed: SignedRosterChange | SignedKeyOperation | recovery.RecoverySigned
        try:
            if r.kind == "roster":
                signed = SignedRosterChange.from_bytes(bytes(r.signed))
                message, digest = signed.change.encode(), signed.change.digest()
            elif r.kind == "key-operation":
                signed = SignedKeyOperation.from_bytes(bytes(r.signed))
                message, digest = signed.operation.encode(), signed.operation.digest()
            elif r.kind in recovery.RECOVERY_KINDS:  # issue 12 (mpcnet.client.backup checks them)
                signed, message, digest = recovery.decode(r.kind, bytes(r.signed))
            else:
                raise _data_loss(f"proposal.kind: unknown kind {quote(r.kind)}")
        except GovernanceError as e:
            raise _data_loss(f"proposal.signed.{e.field}: {e.reason} (the coordinator sent a malformed proposal)") from None
        if digest[:16].hex() != r.proposal_id:
            raise _data_loss(f"proposal: id {quote(r.proposal_id)} does not match its {r.kind}")
        admins: AdminSet | None = getattr(self, "admin_set", None)
        quorum = admins.quorum if admins is not None else r.admin_quorum
        if admins is not None and recovery.is_export(signed):  # the export quorum of the order's configuration
            quorum = max(quorum, self._export_quorum(signed))
        return LifecycleProposalView(
            r.proposal_id, r.kind, _PROPOSAL_STATE.get(r.state, "unspecified"), signed, r.proposer,
            quorum, r.created_unix_ms, r.updated_unix_ms,
            tuple(r.operations), r.error, _signers(admins, message, signed.signatures),
        )

    def get_lifecycle_proposal(self, proposal_id: str) -> LifecycleProposalView:
        r = self._call(self._stub.GetLifecycleProposal, coordinator_pb2.GetLifecycleProposalRequest(proposal_id=proposal_id))
        p = self._lifecycle_proposal(r)
        if p.proposal_id != proposal_id:
            raise _data_loss(
                f"proposal_id: asked for proposal {quote(proposal_id)}, the coordinator answered with proposal {p.proposal_id}"
            )
        return p

    def list_lifecycle_proposals(self, state: str | None = None) -> list[LifecycleProposalView]:
        names = {v: k for k, v in _PROPOSAL_STATE.items()}
        req = coordinator_pb2.ListLifecycleProposalsRequest(state=names[state] if state else 0)  # type: ignore[arg-type]
        return [self._lifecycle_proposal(p) for p in self._call(self._stub.ListLifecycleProposals, req).proposals]

    def check_lifecycle_proposal(self, p: LifecycleProposalView) -> None:
        """FAILED_PRECONDITION (nothing signed) unless ``p`` is for this cluster and still applies:
        a roster change extends the verified roster in force; a key operation matches the key's
        checked record (id, public key, chain code, epoch, threshold, committee) and the verified
        roster (version, active new committee); a recovery configuration or recovery order
        (issue 12) passes :meth:`mpcnet.client.backup.BackupMixin.check_recovery_proposal`."""
        admins = self._admins()
        if isinstance(p.signed, SignedRosterChange):
            change = p.signed.change
            if not hmac.compare_digest(change.governance_root, admins.digest()):
                raise _refused("proposal.governance_root: made for another cluster or admin set")
            view = self.roster()
            if change.previous_digest is None or not hmac.compare_digest(change.previous_digest, view.roster.digest()):
                raise _refused(f"proposal.previous_digest: does not extend the roster in force (version {view.version}): stale or forked"
                               " (another roster change was applied since it was proposed: propose it again, e.g. 'mpc node replace N"
                               " --enrolment FILE'; roster changes go one at a time)")
            return
        if not isinstance(p.signed, SignedKeyOperation):
            self.check_recovery_proposal(p)  # issue 12: mpcnet.client.backup
            return
        op = p.signed.operation
        if not hmac.compare_digest(op.governance_root, admins.digest()):
            raise _refused("proposal.governance_root: made for another cluster or admin set")
        key = self._checked_key(op.key_id, frost=True)
        for name, want, got in (
            ("scheme", key.scheme, op.scheme),  # issue 16: an operation names its key's scheme
            ("public_key", key.public_key, op.public_key), ("chain_code", key.chain_code, op.chain_code),
            ("old_epoch", key.epoch, op.old_epoch), ("old_threshold", key.threshold, op.old_threshold),
            ("old_committee", key.committee, op.old_committee),
        ):
            if want != got:
                raise _refused(f"operation.{name}: does not match key {key.key_id.hex()} (stale operation, or not this key)")
        view = self.roster()
        if op.roster_version != view.version:
            raise _refused(f"operation.roster_version: is {op.roster_version}, the roster in force is version {view.version}")
        absent = [i for i in op.new_committee if i not in set(view.active())]
        if absent:
            raise _refused(f"operation.new_committee: node {absent[0]} is not an active node of roster version {view.version}")

    def approve_lifecycle(self, proposal_id: str, *, expect_digest: bytes | None = None) -> LifecycleProposalView:
        """Sign a pending roster change, key operation, recovery configuration or recovery order
        proposal and submit the signature.

        Before signing: the proposal fetched is the one named, ``expect_digest`` (32 bytes, the
        SHA-256 of the canonical change or operation, as ``digest`` shows it) matches if given,
        and :meth:`check_lifecycle_proposal` passes; else FAILED_PRECONDITION and nothing is
        signed."""
        me = self._me()
        p = self.get_lifecycle_proposal(proposal_id)
        if expect_digest is not None and not hmac.compare_digest(p.digest, expect_digest):
            raise _refused(f"digest: proposal {proposal_id} is {p.digest.hex()}, not the expected {expect_digest.hex()}")
        if p.state != "pending":
            raise MpcError(grpc.StatusCode.FAILED_PRECONDITION, f"proposal: {proposal_id} is {p.state}, not pending")
        self.check_lifecycle_proposal(p)
        if isinstance(p.signed, SignedRosterChange):
            sig = sign_roster_change(p.signed.change, me.name, me.signing_key)
        elif isinstance(p.signed, SignedKeyOperation):
            sig = sign_key_operation(p.signed.operation, me.name, me.signing_key)
        else:
            sig = recovery.sign(p.signed, me.name, me.signing_key)
        r = self._call(
            self._stub.ApproveLifecycleProposal,
            coordinator_pb2.ApproveLifecycleProposalRequest(proposal_id=proposal_id, admin=me.name, signature=sig.signature),
        )
        out = self._lifecycle_proposal(r)
        if out.proposal_id != proposal_id:
            raise _data_loss(
                f"proposal_id: approved proposal {quote(proposal_id)}, the coordinator answered with proposal {out.proposal_id}"
            )
        return out

    # --- operation state ------------------------------------------------------------------------
    def key_operation(self, operation_id: str) -> KeyOperationView:
        """One key operation (``GetKeyOperation``), checked (:meth:`KeyOperationView.from_proto`)."""
        r = self._call(self._stub.GetKeyOperation, coordinator_pb2.GetKeyOperationRequest(operation_id=operation_id))
        v = KeyOperationView.from_proto(r)
        if v.operation_id != operation_id:
            raise _data_loss(f"operation_id: asked for operation {quote(operation_id)}, the coordinator answered with {v.operation_id}")
        return v

    def key_operations(self, key_id: bytes | str | None = None) -> list[KeyOperationView]:
        """The key operations of ``key_id`` (every key's for None)."""
        kid = bytes.fromhex(key_id) if isinstance(key_id, str) else (key_id or b"")
        r = self._call(self._stub.ListKeyOperations, coordinator_pb2.ListKeyOperationsRequest(key_id=kid))
        out = [KeyOperationView.from_proto(s) for s in r.operations]
        if kid and any(v.operation.key_id != kid for v in out):
            raise _data_loss(f"operations: asked for key {kid.hex()}, the coordinator answered with another key's operation")
        return out

    def wait_key_operation(
        self, operation_id: str, timeout: float | None = None, *, on_change: Callable[[KeyOperationView], None] | None = None,
        sleep: Callable[[float], None] = time.sleep, on_retry: Callable[[str], None] | None = None,
    ) -> KeyOperationView:
        """Poll ``operation_id`` until it is done or failed (returned; check ``state``).
        ``timeout`` seconds (None: no limit): then DEADLINE_EXCEEDED ``operation ID still STATE
        after N s``. ``on_change`` is called with every new state seen.

        Once the coordinator has answered, UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, ABORTED and
        RESOURCE_EXHAUSTED (a coordinator restarting in the middle of the operation, which it
        resumes) are retried until ``timeout``, like :meth:`MpcClient.watch_sign_request`;
        ``on_retry`` is called with one line (code and the server's text) once per run of such
        errors. Any other error, and any error before the first answer, raise :class:`MpcError`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause, last = _POLL_S[0], ""
        told = False  # on_retry was called for the current run of errors
        while True:
            try:
                v = self.key_operation(operation_id)
            except MpcError as e:
                if not last or e.code not in _OPERATION_WAIT_RETRY:
                    raise
                if on_retry is not None and not told:
                    on_retry(f"{e.code.name}: {e.message}")
                told = True
            else:
                told = False
                if v.state != last and on_change is not None:
                    on_change(v)
                last = v.state
                if v.finished:
                    return v
            if deadline is not None and time.monotonic() >= deadline:
                raise MpcError(grpc.StatusCode.DEADLINE_EXCEEDED, f"operation {operation_id} still {last} after {timeout:g} s")
            wait = pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic()))
            sleep(wait)
            pause = min(pause * 2, _POLL_S[1])


def roster_entry_status(entry: RosterEntry) -> str:
    """``active`` or ``revoked``."""
    return "active" if entry.status is NodeStatus.ACTIVE else "revoked"


def _check_frost_key(key: Key) -> None:
    """Issue 16: a FROST key's record binds its id (``frost_key_id(scheme, public_key)``), its
    public key is a valid group element of its scheme and it has no chain code; DATA_LOSS naming
    the field otherwise (the coordinator sent a malformed key)."""
    from crypto_core.frost.public import frost_key_id, scheme_group

    try:
        scheme_group(key.scheme, "scheme").decode(key.public_key, "public_key")
    except (DecodeError, UsageError) as e:
        raise _data_loss(f"key.public_key: not a valid {quote(key.scheme)} key ({e}) (the coordinator sent a malformed key)") from None
    if key.chain_code:
        raise _data_loss(f"key.chain_code: a {key.scheme} key has none (the coordinator sent a malformed key)")
    if not hmac.compare_digest(frost_key_id(key.scheme, key.public_key), key.key_id):
        raise _data_loss(f"key.key_id: {key.key_id.hex()} is not the id of the scheme and public key the coordinator sent")
