"""Typed Python client of the coordinator (mpc.v1.Coordinator over mTLS).

Each client acts as one identity (a certificate, and for approvers and admins an Ed25519 key
that signs their decisions here, client-side; the coordinator only stores and forwards them)::

    admin = MpcClient.from_cluster("var/c", identity="admin1")
    key = admin.create_key("treasury")
    requester = MpcClient.from_cluster("var/c", identity="requester1")
    req = requester.submit_sign_request(key.key_id, hashlib.sha256(b"hello").digest(), description="test")
    for name in ("approver1", "approver2"):
        with MpcClient.from_cluster("var/c", identity=name) as approver:
            approver.approve(req.request_id)
    done = requester.wait_sign_request(req.request_id)
    print(done.state, done.signature.der.hex())

Failures raise :class:`MpcError` with the gRPC status code and the server's message.

Admins also talk to the nodes *directly* (with their own certificate; endpoints from
cluster.json): :meth:`MpcClient.push_policy` installs a scope's signed change history on every
node and :meth:`MpcClient.attest` signs and sends a policy attestation, so that a coordinator
cannot withhold either. An admin whose approval (or proposal) completes a change does both by
default.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import grpc
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from crypto_core.bip32 import Derived, check_path, derive, parse_path, xpub
from crypto_core.errors import UsageError
from crypto_core.group import Point
from governance.approval import Approval, Decision, SigningRequest, sign_approval
from governance.attestation import PolicyAttestation, PolicyHead, SignedPolicyAttestation, sign_attestation
from governance.digits import parse_uint as parse_uint  # re-exported: the one parser of numbers typed as text
from governance.errors import GovernanceError
from governance.policy import (
    DEFAULT_SCOPE,
    AdminSet,
    AdminSignature,
    KeyPolicy,
    PolicyChange,
    SignedPolicyChange,
    check_admin_signature,
    sign_policy_change,
    verify_policy_change,
)
from governance.text import quote
from mpcnet.client import formats
from mpcnet.client.approval_cache import OwnApprovals, check_approval_once
from mpcnet.client.backup import (
    BackupMixin,
    BackupView as BackupView,  # re-exported: backup and recovery views (issue 12)
    CeremonyView as CeremonyView,
    RecoveryConfigView as RecoveryConfigView,
)
from mpcnet.client.errors import (
    MpcError as MpcError,  # re-exported (defined there for mpcnet.client.formats)
    PathError,
)
from mpcnet.client.identities import Identity, identity_dir, load_identity
from mpcnet.client.lifecycle import (
    KeyOperationView as KeyOperationView,  # re-exported: the key lifecycle's views
    LifecycleMixin,
    LifecycleProposalView as LifecycleProposalView,
    RosterView as RosterView,
)
from mpcnet.client.pools import PoolView as PoolView, PresignStatus as PresignStatus  # re-exported (issue 14)
from mpcnet.client.request_memo import decode_request
from mpcnet.client.schnorr import (
    SCHEME_ECDSA,
    SchnorrSignature as SchnorrSignature,  # re-exported (issue 16)
    check_message,
    check_scheme,
    check_schnorr_key,
    check_taproot_root,
    checked_message,
    checked_signature,
    message_view,
    no_derivation,
    schnorr_describe,
    signing_key,
)
from mpcnet.client.seen import FILE_NAME as SEEN_FILE, SeenChains
from mpcnet.client.signing_keys import SigningKeyCache
from mpcnet.common.clockskew import format_skew
from mpcnet.common.config import ConfigError, Fields
from mpcnet.common.govwire import entry_rows
from mpcnet.common.pki import CertPaths, channel_credentials
from mpcnet.common.rpc import CHANNEL_OPTIONS
from mpcnet.wire.mpc.v1 import common_pb2, coordinator_pb2, coordinator_pb2_grpc, governance_pb2, node_pb2, node_pb2_grpc

_STATUS = {v: k for k, v in common_pb2.KeyStatus.items()}
_Req = TypeVar("_Req")  # a unary RPC's request message (MpcClient._call)
_Resp = TypeVar("_Resp")  # and its response message
_STATE = {v: k for k, v in coordinator_pb2.RequestState.items()}
_KIND = {v: k for k, v in coordinator_pb2.RequestKind.items()}
_SIGN_STATE = {v: k.removeprefix("SIGN_REQUEST_STATE_").lower() for k, v in coordinator_pb2.SignRequestState.items()}
SIGN_STATES = tuple(s for s in _SIGN_STATE.values() if s != "unspecified")
TERMINAL_STATES = ("done", "rejected", "expired", "failed")
RELAYED = "unreachable (relayed by the coordinator)"  # send_attestation: a node this host cannot reach
_IN_FORCE_TTL_S = 30.0  # how long "this policy is the one in force" is taken as known (a wait re-checks)
_PolicyRef = tuple[bytes, int, bytes]  # (key id, policy version, policy digest) a request names
_InForce = tuple[bool, int, str]  # (the request's policy is in force, version in force, "key" | "default")
_PROPOSAL_STATE = {v: k.removeprefix("PROPOSAL_STATE_").lower() for k, v in coordinator_pb2.ProposalState.items()}
_WATCH_BACKOFF_S = (0.2, 5.0)  # a watch's first and longest wait before it resumes after an error
# what a watch resumes after (once the coordinator answered): the coordinator is restarting or
# unreachable, ended the stream, or has no free stream slot right now
_WATCH_RETRY = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
})
_WATCH_ODD_RETRIES = 3  # INTERNAL/UNKNOWN in a row that a watch still retries
_PINNED_REQUESTS = 4096  # canonical requests a client remembers (submitted, signed, viewed, waited for)
TEAM_DECIDE_WAIT_MS = 2000  # SigningTeam: how long a deciding approval's answer may wait for DONE (issue 14)
APPROVE_CLOCK_SLACK_MS = 5 * 60 * 1000  # what nodes allow for "created in the future" (governance.approval)


def ethereum_address(public_key: bytes) -> str:
    """EIP-55 checksummed address of a secp256k1 public key (33 or 65 bytes SEC1, validated:
    :class:`MpcError` INVALID_ARGUMENT naming ``public_key`` otherwise)."""
    return formats.ethereum_address(public_key)


def to_path(path: str | Sequence[int] | None) -> tuple[int, ...]:
    """A BIP32 non-hardened path as indices: text such as ``"m/0/1"`` (``"m"``, ``""`` or None for
    the key itself; each index 1-10 ASCII digits below 2**31, see :func:`crypto_core.bip32.parse_path`)
    or a list/tuple of ints. Raises :class:`mpcnet.client.errors.PathError` (an MpcError
    INVALID_ARGUMENT and a crypto_core UsageError) naming the index: a non-ASCII digit
    (``m/\\uff11\\uff12``: full-width 12), ``_``, space, sign, hex, or a hardened marker (``'``/``h``)."""
    if path is None:
        return ()
    try:
        if isinstance(path, str):
            return parse_path(path)
        if not isinstance(path, (list, tuple)):  # bytes or a range would pass as "a sequence of ints"
            raise UsageError(f"derivation_path: must be text such as m/0/1 or a list of indices, got {type(path).__name__}")
        return check_path(tuple(path))
    except UsageError as e:
        raise PathError(str(e)) from None


def path_text(path: Sequence[int]) -> str:
    """``m/0/1`` for ``(0, 1)``; ``m`` for the key itself."""
    return "m" + "".join(f"/{i}" for i in path)


def _malformed(e: MpcError, what: str) -> MpcError:
    """A refused field of something the coordinator sent (DATA_LOSS: it is not the caller's fault)."""
    return MpcError(grpc.StatusCode.DATA_LOSS, f"{what}.{e.message} (the coordinator sent a malformed {what})")


@dataclass(frozen=True)
class Key:
    """A threshold key as the coordinator reports it; checked when built (``key_id`` and
    ``chain_code`` 32 bytes, ``public_key`` a 33-byte compressed point on secp256k1; issue 16: a
    Schnorr key (``scheme`` ed25519 / schnorr-secp256k1-bip340) has no chain code and its
    ``public_key`` is the group key, 32 bytes Ed25519 or 33 bytes compressed secp256k1), else
    :class:`MpcError` INVALID_ARGUMENT (DATA_LOSS from :meth:`from_proto`)."""

    key_id: bytes
    label: str
    public_key: bytes  # 33 bytes compressed
    chain_code: bytes  # 32 bytes: the root chain code (BIP32)
    threshold: int
    parties: int
    status: str
    created_unix_ms: int
    epoch: int = 0  # 0 from the DKG, +1 per refresh or reshare (issue 11)
    committee: tuple[int, ...] = ()  # roster indices holding shares, increasing (empty: not reported)
    presignatures_ready: int = 0  # issue 14: ready pool presignatures (all paths and signer sets; the coordinator's word)
    scheme: str = SCHEME_ECDSA  # issue 16: ecdsa-secp256k1 | ed25519 | schnorr-secp256k1-bip340

    def __post_init__(self) -> None:
        if check_scheme(self.scheme) != SCHEME_ECDSA:
            check_schnorr_key(self.key_id, self.scheme, self.public_key, self.chain_code)
            return
        for name, value in (("key_id", self.key_id), ("chain_code", self.chain_code)):
            if not isinstance(value, bytes) or len(value) != 32:
                raise MpcError(grpc.StatusCode.INVALID_ARGUMENT, f"{name}: must be 32 bytes")
        if not isinstance(self.public_key, bytes) or len(self.public_key) != formats.COMPRESSED_LEN:
            raise MpcError(grpc.StatusCode.INVALID_ARGUMENT, "public_key: must be a 33-byte compressed SEC1 point")
        formats.check_public_key(self.public_key)

    @staticmethod
    def from_proto(k: common_pb2.KeyInfo) -> Key:
        try:
            return Key(
                bytes(k.key_id), k.label, bytes(k.public_key), bytes(k.chain_code), k.threshold, k.parties,
                _STATUS.get(k.status, "KEY_STATUS_UNSPECIFIED").removeprefix("KEY_STATUS_").lower(), k.created_unix_ms,
                k.epoch, tuple(k.committee), k.presignatures_ready, k.scheme or SCHEME_ECDSA,
            )
        except MpcError as e:
            raise _malformed(e, "key") from None

    def derived(self, path: str | Sequence[int] | None = None) -> Derived:
        """BIP32 CKDpub of this key along a non-hardened ``path`` (see :func:`to_path`): the
        derived key, its chain code, depth, parent fingerprint and child number (the key itself,
        depth 0, for no path). UsageError for a bad path; MpcError FAILED_PRECONDITION naming
        ``derivation_path`` for a Schnorr key (no BIP32 derivation)."""
        no_derivation(self.scheme)
        return derive(Point.decode(self.public_key, "public_key"), self.chain_code, to_path(path))

    def derive(self, path: str | Sequence[int] | None = None) -> bytes:
        """Compressed public key at a BIP32 non-hardened path (the key itself for ``None``)."""
        return self.derived(path).public_key.encode()

    def describe(self, path: str | Sequence[int] | None = None) -> dict[str, Any]:
        """The key at ``path`` (BIP32 non-hardened; the key itself for None) in every format a
        wallet needs. Keys (stable): ``key_id``, ``label``, ``status``, ``threshold``, ``parties``,
        ``epoch`` and ``committee`` (issue 11: roster indices holding shares; [] if not reported),
        ``path`` (``m/0/1``), ``public_key`` (33 bytes compressed, hex), ``public_key_uncompressed``
        (65 bytes, hex), ``ethereum_address`` (EIP-55), ``public_key_pem`` (SubjectPublicKeyInfo
        PEM, multi-line text), ``chain_code`` (32 bytes hex: the *derived* key's chain code; the
        root's for no path), ``xpub`` (the BIP32 extended public key of the derived key: version
        0x0488B21E, depth = path length, parent fingerprint, child number = last index; Base58Check),
        ``created_unix_ms``. Issue 16: a Schnorr key (no ``path``) has ``scheme`` and the
        chain-native forms of :func:`mpcnet.client.schnorr.native_forms` instead of the
        secp256k1/BIP32 ones."""
        if self.scheme != SCHEME_ECDSA:
            return schnorr_describe(self, path)
        d = self.derived(path)
        pk = d.public_key.encode()
        return {
            "key_id": self.key_id.hex(),
            "label": self.label,
            "status": self.status,
            "threshold": self.threshold,
            "parties": self.parties,
            "epoch": self.epoch,
            "committee": list(self.committee),
            "path": path_text(to_path(path)),
            "public_key": pk.hex(),
            "public_key_uncompressed": formats.uncompressed(pk).hex(),
            "ethereum_address": formats.ethereum_address(pk),
            "public_key_pem": formats.public_key_pem(pk),
            "chain_code": d.chain_code.hex(),
            "xpub": xpub(d),
            "created_unix_ms": self.created_unix_ms,
        }


@dataclass(frozen=True)
class SignatureResult:
    """A finished signature; checked when built (1 <= r < q, low s, recovery_id 0..3, ``der`` the
    DER encoding of (r, s), ``public_key`` a 33-byte compressed point), else :class:`MpcError`
    INVALID_ARGUMENT (DATA_LOSS from :meth:`from_proto`)."""

    request_id: str
    r: int
    s: int
    recovery_id: int
    der: bytes
    public_key: bytes  # 33 bytes compressed: the (derived) key that verifies it
    signers: tuple[int, ...]

    def __post_init__(self) -> None:
        formats.check_signature(self.r, self.s, self.recovery_id)
        if not isinstance(self.der, bytes) or self.der != encode_dss_signature(self.r, self.s):
            raise MpcError(grpc.StatusCode.INVALID_ARGUMENT, "signature.der: is not the DER encoding of (r, s)")
        if not isinstance(self.public_key, bytes) or len(self.public_key) != formats.COMPRESSED_LEN:
            raise MpcError(grpc.StatusCode.INVALID_ARGUMENT, "signature.public_key: must be a 33-byte compressed SEC1 point")
        formats.check_public_key(self.public_key, "signature.public_key")

    @staticmethod
    def from_proto(rid: str, sig: common_pb2.Signature, signers: Sequence[int]) -> SignatureResult:
        for name in ("r", "s"):
            if len(getattr(sig, name)) != 32:
                raise MpcError(
                    grpc.StatusCode.DATA_LOSS, f"signature.{name}: must be 32 bytes (the coordinator sent a malformed signature)"
                )
        try:
            return SignatureResult(
                rid, int.from_bytes(sig.r, "big"), int.from_bytes(sig.s, "big"), sig.recovery_id, bytes(sig.der),
                bytes(sig.public_key), tuple(signers),
            )
        except MpcError as e:
            raise MpcError(grpc.StatusCode.DATA_LOSS, f"{e.message} (the coordinator sent a malformed signature)") from None

    def recovers_to(self, digest: bytes) -> bool:
        """Whether ``(r, s, recovery_id)`` over the 32-byte ``digest`` recovers ``public_key`` (so the
        signature verifies and its ``compact``/``ethereum`` forms name the right key)."""
        try:
            return formats.recover_public_key(self.r, self.s, self.recovery_id, digest) == self.public_key
        except MpcError:
            return False

    def as_dict(self, chain_id: int | None = None) -> dict[str, Any]:
        """Keys (stable): ``request_id``, ``r``, ``s`` (64 hex digits each), ``recovery_id`` (0..3),
        ``der`` (hex), ``compact`` (``r || s``, 64 bytes hex), ``ethereum`` (``r || s || v`` hex: 65
        bytes while v < 256), ``v`` (27/28, or EIP-155 ``chain_id * 2 + 35 + recovery_id``),
        ``chain_id`` (as given, or None), ``public_key`` (33 bytes compressed hex),
        ``public_key_pem`` (SubjectPublicKeyInfo PEM, multi-line text), ``signers``.

        ``chain_id``: None, or a positive int at most :data:`mpcnet.client.formats.MAX_CHAIN_ID`
        (MpcError INVALID_ARGUMENT otherwise). ``ethereum`` and ``v`` are None for a recovery id
        of 2 or 3 (probability about 2^-127), which has no unambiguous Ethereum ``v``."""
        formats.check_chain_id(chain_id)
        eth = self.recovery_id in (0, 1)
        v = formats.ethereum_v(self.recovery_id, chain_id) if eth else None
        return {
            "request_id": self.request_id,
            "r": f"{self.r:064x}",
            "s": f"{self.s:064x}",
            "recovery_id": self.recovery_id,
            "der": self.der.hex(),
            "compact": formats.compact(self.r, self.s).hex(),
            "ethereum": formats.ethereum_signature(self.r, self.s, self.recovery_id, chain_id).hex() if eth else None,
            "v": v,
            "chain_id": chain_id,
            "public_key": self.public_key.hex(),
            "public_key_pem": formats.public_key_pem(self.public_key),
            "signers": list(self.signers),
        }


@dataclass(frozen=True)
class RequestInfo:
    request_id: str
    kind: str
    state: str
    key_id: bytes
    error_code: str
    error_message: str
    signature: SignatureResult | SchnorrSignature | None  # SchnorrSignature for an ed25519 / bip340 key (issue 16)
    attempts: int

    def as_dict(self, chain_id: int | None = None) -> dict[str, Any]:
        """``signature`` is :meth:`SignatureResult.as_dict` with ``chain_id`` (or None)."""
        return {
            "request_id": self.request_id,
            "kind": self.kind,
            "state": self.state,
            "key_id": self.key_id.hex(),
            "error": None if self.state != "failed" else {"code": self.error_code, "message": self.error_message},
            "signature": _sig_dict(self.signature, chain_id),
            "attempts": self.attempts,
        }


def _sig_dict(sig: SignatureResult | SchnorrSignature | None, chain_id: int | None) -> dict[str, Any] | None:
    if isinstance(sig, SchnorrSignature):
        return sig.as_dict()
    return sig.as_dict(chain_id) if sig else None


@dataclass(frozen=True)
class ApprovalView:
    """One decision as the coordinator lists it. ``verified``: its Ed25519 ``signature`` (64 bytes
    as sent) verifies over the request's canonical bytes under the admin-signed policy the request
    names (checked by :class:`MpcClient`; False until then). ``why``: why not, when not."""

    approver: str
    decision: str  # "approve" | "reject"
    decided_unix_ms: int
    signature: bytes = b""
    verified: bool = False
    why: str = ""


@dataclass(frozen=True)
class SignRequest:
    """A signing request as the coordinator reports it; ``request`` is decoded (strictly) from
    the canonical bytes approvers sign, never taken from the convenience fields."""

    request_id: str
    state: str  # pending_approval | signing | done | rejected | expired | failed
    request: SigningRequest
    request_bytes: bytes
    approvals: tuple[ApprovalView, ...]
    approval_quorum: int
    approvers: int
    signature: SignatureResult | SchnorrSignature | None  # SchnorrSignature for an ed25519 / bip340 key (issue 16)
    error_code: str
    error_message: str
    attempts: int
    updated_unix_ms: int
    # True when MpcClient checked the approvals against the request's policy (admin-signed by a
    # quorum of the client's own admin set, digest = the request's policy_digest): each approval's
    # ``verified`` then says whether it counts, and approval_quorum/approvers are the policy's.
    # False: nothing the coordinator says about approvals is verified (``approvals_note`` says why).
    approvals_verified: bool = False
    approvals_note: str = "not checked"
    # Whether the request's (verified) policy is the one in force for its key now: the nodes sign
    # only under that one, so approvals under a superseded policy (an older version, or the
    # default's for a key that now has its own) never make the request signable. None: not
    # checked (``approvals_verified`` False). ``policy_in_force_version``/``_scope``: the policy in
    # force, "key" (the key's own) or "default" (inherited).
    policy_in_force: bool | None = None
    policy_in_force_version: int | None = None
    policy_in_force_scope: str | None = None
    presigned: bool = False  # issue 14: signed in one round from a pool presignature (the coordinator's word)
    # issue 16, ed25519 keys: the message signed (its SHA-256 is request.digest, checked); b"" otherwise
    message: bytes = b""

    @staticmethod
    def from_proto(r: coordinator_pb2.SignRequestInfo) -> SignRequest:
        """The request as the coordinator sent it; every approval unverified (see
        :meth:`MpcClient.verify_approvals`)."""
        try:
            req = decode_request(r.request)  # issue 14: decoded once per process (mpcnet/client/request_memo.py)
        except GovernanceError as e:
            raise MpcError(grpc.StatusCode.DATA_LOSS, f"request.{e.field}: {e.reason} (the coordinator sent a malformed request)") from None
        if req.request_id != r.request_id:
            raise MpcError(grpc.StatusCode.DATA_LOSS, f"request: the coordinator sent request {req.request_id!r} for {r.request_id!r}")
        message = checked_message(req, bytes(r.message), bytes(r.taproot_merkle_root))
        sig: SignatureResult | SchnorrSignature | None = None
        if r.HasField("signature") and req.scheme != SCHEME_ECDSA:  # issue 16: verified by independent libraries
            sig = checked_signature(r.request_id, req, message, r.signature, r.signers)
        elif r.HasField("signature"):
            sig = SignatureResult.from_proto(r.request_id, r.signature, r.signers)
            if not sig.recovers_to(req.digest):
                raise MpcError(
                    grpc.StatusCode.DATA_LOSS,
                    "signature: does not recover its public_key from the request's digest (the coordinator sent a malformed signature)",
                )
        return SignRequest(
            request_id=r.request_id, state=_SIGN_STATE.get(r.state, "unspecified"), request=req, request_bytes=bytes(r.request),
            approvals=tuple(
                ApprovalView(
                    a.approver, "approve" if a.decision == coordinator_pb2.DECISION_APPROVE else "reject", a.decided_unix_ms,
                    bytes(a.signature),
                )
                for a in r.approvals
            ),
            approval_quorum=r.approval_quorum, approvers=r.approvers, signature=sig,
            error_code=_code_name(r.error_code) if r.error_code else "", error_message=r.error_message,
            attempts=r.attempts, updated_unix_ms=r.updated_unix_ms, presigned=r.presigned, message=message,
        )

    def verified(self, decision: str) -> list[str]:
        """Approvers whose ``decision`` ("approve" | "reject") verified (each once), whether or not
        the request's policy is still in force."""
        return list(dict.fromkeys(a.approver for a in self.approvals if a.verified and a.decision == decision))

    @property
    def superseded_while_open(self) -> bool:
        """True when the request is still open (pending approval or signing) and its policy is no
        longer the one in force: the nodes will not sign it, whatever its approvals."""
        return self.policy_in_force is False and self.state not in TERMINAL_STATES

    @property
    def approved_by(self) -> list[str]:
        """Approvers whose approval was verified (each once); empty when ``approvals_verified`` is
        False, and while the request is open under a superseded policy (those approvals cannot
        make it signable: :meth:`verified` still names them)."""
        return [] if self.superseded_while_open else self.verified("approve")

    @property
    def rejected_by(self) -> list[str]:
        """Approvers whose rejection was verified (each once)."""
        return self.verified("reject")

    @property
    def unverified(self) -> list[ApprovalView]:
        """The decisions the coordinator lists that do not count (bad signature, not an approver of
        the request's policy, or the policy could not be checked)."""
        return [a for a in self.approvals if not a.verified]

    def as_dict(self, chain_id: int | None = None) -> dict[str, Any]:
        """``signature`` is :meth:`SignatureResult.as_dict` with ``chain_id`` (None: v = 27/28;
        else EIP-155), or None before the request is done."""
        q = self.request
        return {
            "request_id": self.request_id,
            "state": self.state,
            "key_id": q.key_id.hex(),
            "digest": q.digest.hex(),
            **_schnorr_fields(self),
            "path": path_text(q.derivation_path),
            "requester": q.requester,
            "description": q.description,
            "created_unix_ms": q.created_at_ms,
            "expires_unix_ms": q.expires_at_ms,
            "policy_version": q.policy_version,
            "policy_digest": q.policy_digest.hex(),
            "approval_quorum": self.approval_quorum,
            "approvers": self.approvers,
            "approvals": [
                {
                    "approver": a.approver, "decision": a.decision, "decided_unix_ms": a.decided_unix_ms,
                    "signature": a.signature.hex(), "verified": a.verified, **({"unverified_reason": a.why} if not a.verified else {}),
                }
                for a in self.approvals
            ],
            "approvals_verified": self.approvals_verified,
            "approvals_unverified_reason": None if self.approvals_verified else self.approvals_note,
            "policy_in_force": self.policy_in_force,
            "policy_in_force_version": self.policy_in_force_version,
            "policy_in_force_scope": self.policy_in_force_scope,
            "signature": _sig_dict(self.signature, chain_id),
            "error": {"code": self.error_code, "message": self.error_message} if self.error_message else None,
            "attempts": self.attempts,
            "presigned": self.presigned,
        }


def _schnorr_fields(r: SignRequest) -> dict[str, Any]:
    """Issue 16 rows of a request's view: ``scheme`` always; an ed25519 request's message as
    :func:`mpcnet.client.schnorr.message_view` (size, SHA-256, safe preview: never the raw
    bytes); a bip340 request's ``taproot_root`` (hex, or None for BIP86)."""
    q = r.request
    out: dict[str, Any] = {"scheme": q.scheme}
    if r.message:
        out |= message_view(r.message)
    if q.scheme == "schnorr-secp256k1-bip340":
        out["taproot_root"] = q.taproot_root.hex() or None
    return out


def _the_request(r: SignRequest, request_id: str) -> SignRequest:
    """``r`` if it is the request ``request_id`` (a coordinator answering about one request with
    another, e.g. to have an approval signed over it, is refused: DATA_LOSS)."""
    if r.request_id != request_id:
        raise MpcError(
            grpc.StatusCode.DATA_LOSS,
            f"request_id: asked for request {quote(request_id)}, the coordinator answered with request {quote(r.request_id)}",
        )
    return r


def _scope_text(scope: bytes) -> str:
    return "the default scope" if scope == DEFAULT_SCOPE else f"key {scope.hex()[:16]}..."


def _admin_signers(admin_set: AdminSet | None, signed: SignedPolicyChange) -> tuple[str, ...] | None:
    """The admins of ``admin_set`` whose signature on ``signed`` verifies (sorted, each once), or
    None without an admin set (nothing can be verified)."""
    if admin_set is None:
        return None
    good = set()
    for s in signed.signatures:
        try:
            check_admin_signature(admin_set, signed.change, s)
            good.add(s.admin)
        except GovernanceError:
            pass
    return tuple(sorted(good))


def _signer_fields(signed: SignedPolicyChange, verified: tuple[str, ...] | None) -> dict[str, Any]:
    """``signed_by`` (verified admins only), ``unverified_signers`` (the other names listed) and
    ``signatures_verified`` (False: no admin set to check against, so nobody counts as signed)."""
    ok = verified or ()
    return {
        "signed_by": list(ok),
        "unverified_signers": sorted({s.admin for s in signed.signatures} - set(ok)),
        "signatures_verified": verified is not None,
    }


@dataclass(frozen=True)
class PolicyView:
    scope: bytes
    policy: KeyPolicy
    inherited: bool
    signed_change: SignedPolicyChange
    # admins whose signature verified against the client's admin set (None: no admin set known)
    verified_signers: tuple[str, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "scope": "default" if self.scope == DEFAULT_SCOPE else self.scope.hex(),
            "inherited_from_default": self.inherited,
            "policy_digest": self.policy.digest().hex(),
            **_signer_fields(self.signed_change, self.verified_signers),
            **self.policy.to_dict(),
        }


@dataclass(frozen=True)
class Proposal:
    proposal_id: str
    state: str  # pending | applied | superseded
    signed_change: SignedPolicyChange
    proposer: str
    admin_quorum: int
    created_unix_ms: int
    # set when this client completed the change and pushed it to the nodes directly:
    # node name -> outcome (see MpcClient.push_policy and MpcClient.attest)
    pushed: dict[str, str] | None = None
    # admins whose signature verified against the client's admin set (None: no admin set known;
    # then admin_quorum is the coordinator's word)
    verified_signers: tuple[str, ...] | None = None

    @property
    def signers(self) -> list[str]:
        """Admins whose signature verified (each once); empty without an admin set."""
        return list(self.verified_signers or ())

    @property
    def unverified_signers(self) -> list[str]:
        """The other admin names the change lists (a signature that does not verify, not an admin, or unchecked)."""
        return _signer_fields(self.signed_change, self.verified_signers)["unverified_signers"]  # type: ignore[no-any-return]

    def as_dict(self) -> dict[str, Any]:
        c = self.signed_change.change
        return {
            "proposal_id": self.proposal_id,
            "state": self.state,
            "proposer": self.proposer,
            "proposer_verified": self.proposer in (self.verified_signers or ()),  # the proposer's own signature verified
            **_signer_fields(self.signed_change, self.verified_signers),
            "admin_quorum": self.admin_quorum,
            "scope": "default" if c.scope == DEFAULT_SCOPE else c.scope.hex(),
            "previous_digest": None if c.previous_digest is None else c.previous_digest.hex(),
            "new_policy": c.new_policy.to_dict(),
            **({"pushed": self.pushed} if self.pushed is not None else {}),
        }


@dataclass(frozen=True)
class NodeState:
    """One node as the coordinator sees it (``ClusterStatus``), including its measured clock.

    ``skew_s`` is the node's clock minus the coordinator's in seconds (None until measured),
    ``skew_error_s`` the measurement's error bound; ``clock_suspect`` means the clock is beyond
    ``max_skew_s`` (or the node refused a live request as expired): signing leaves it out while
    enough other nodes are available.
    """

    index: int
    name: str
    endpoint: str
    healthy: bool
    last_error: str
    policies_synced: bool
    skew_s: float | None
    skew_error_s: float | None
    clock_suspect: bool
    max_skew_s: float
    frost_nonces: int = 0  # issue 16: fresh FROST nonce commitments of this node the coordinator holds

    @staticmethod
    def from_proto(n: coordinator_pb2.NodeStatus) -> NodeState:
        measured = n.clock_measured
        return NodeState(
            n.index, n.name, n.endpoint, n.healthy, n.last_error, n.policies_synced,
            n.clock_skew_ms / 1000 if measured else None, n.clock_error_ms / 1000 if measured else None,
            n.clock_suspect, n.max_clock_skew_ms / 1000, n.frost_nonces,
        )

    @property
    def clock_text(self) -> str:
        """``skew +90.2s CLOCK OFF (beyond 30s)``, ``skew -0.0s`` or ``skew unknown``."""
        if self.skew_s is None:
            text = "skew unknown"
        else:
            text = f"skew {format_skew(round(self.skew_s * 1000))}"
        if self.clock_suspect:
            text += f" CLOCK OFF (beyond {self.max_skew_s:g}s, or refused a live request as expired)"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "name": self.name, "endpoint": self.endpoint, "healthy": self.healthy,
            "last_error": self.last_error, "policies_synced": self.policies_synced, "clock_skew_s": self.skew_s,
            "clock_skew_error_s": self.skew_error_s, "clock_suspect": self.clock_suspect, "max_clock_skew_s": self.max_skew_s,
            "frost_nonces": self.frost_nonces,
        }


@dataclass
class AuditLogCopy:
    """Every entry of one component's audit log, as fetched through the coordinator."""

    component: str
    entries: list[governance_pb2.AuditEntry] = field(default_factory=list)
    head_seq: int = 0

    def rows(self) -> list[tuple[object, ...]]:
        return entry_rows(self.entries)


def _code_name(value: int) -> str:
    for c in grpc.StatusCode:
        if c.value[0] == value:
            return c.name
    return str(value)


class MpcClient(LifecycleMixin, BackupMixin):
    """One channel to the coordinator, reused for every call (thread-safe).

    ``identity`` (a :class:`mpcnet.client.identities.Identity`) is needed for signing approvals and
    policy changes; ``admin_set`` (the cluster's governance root, from the caller's own copy of
    cluster.json) for proposing or approving policy changes.
    """

    def __init__(
        self, endpoint: str, cert: CertPaths | None, ca_cert: Path, *, timeout: float = 300.0,
        identity: Identity | None = None, admin_set: AdminSet | None = None,
    ) -> None:
        if cert is None:  # only useful to show that the server refuses it
            creds = grpc.ssl_channel_credentials(root_certificates=Path(ca_cert).read_bytes())
        else:
            creds = channel_credentials(cert, ca_cert)
        self.endpoint = endpoint
        self.timeout = timeout
        self.identity = identity
        self.admin_set = admin_set
        self._creds = creds
        self._channel = grpc.secure_channel(endpoint, creds, options=CHANNEL_OPTIONS)
        self._stub = coordinator_pb2_grpc.CoordinatorStub(self._channel)
        self.node_endpoints: dict[str, str] = {}  # node name -> endpoint, for direct pushes (admins)
        self._node_channels: dict[str, grpc.Channel] = {}
        self._policies: dict[_PolicyRef, KeyPolicy] = {}  # see request_policy
        self._in_force_at: dict[_PolicyRef, tuple[float, _InForce]] = {}  # see _request_policy
        self._superseded: dict[_PolicyRef, _InForce] = {}
        self.seen_chains: SeenChains | None = None  # from_cluster: the identity's seen-chains file

    @staticmethod
    def from_cluster(directory: str | Path, *, identity: str, timeout: float = 300.0) -> MpcClient:
        """Act as ``identity`` (e.g. ``admin1``, ``requester1``, ``approver2``, ``auditor1``; or a
        plain certificate such as ``client``) on the cluster described by ``DIR/cluster.json``."""
        where = Path(directory) / "cluster.json"
        info = json.loads(where.read_text())
        try:  # file text: checked like a config (a missing field is not an unknown identity)
            fields = Fields(info, str(where))
            ca = Path(fields.text("ca_cert"))
            endpoint = fields.obj("coordinator").endpoint("endpoint")
        except ConfigError as e:
            raise ValueError(f"not a cluster description: {e}") from None
        admin_set = AdminSet.from_dict(info["admin_set"]) if "admin_set" in info else None
        nodes = {str(n["name"]): str(n["endpoint"]) for n in info.get("nodes", [])}
        if identity in info.get("identities", {}):
            ident = load_identity(Path(directory), identity)
            out = MpcClient(endpoint, ident.cert, ca, timeout=timeout, identity=ident, admin_set=admin_set)
            out.node_endpoints = nodes
            if admin_set is not None:  # roster/recovery-configuration anti-rollback across processes
                out.seen_chains = SeenChains(identity_dir(Path(directory), identity) / SEEN_FILE, admin_set.digest())
            return out
        if identity in info.get("certs", {}):
            c = info["certs"][identity]
            return MpcClient(endpoint, CertPaths(Path(c["cert"]), Path(c["key"])), ca, timeout=timeout, admin_set=admin_set)
        known = sorted(info.get("identities", {})) + sorted(info.get("certs", {}))
        raise KeyError(f"no identity {identity!r} in {directory} (known: {', '.join(known)})")

    def close(self) -> None:
        self._channel.close()
        for ch in self._node_channels.values():
            ch.close()
        self._node_channels.clear()

    def __enter__(self) -> MpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: grpc.UnaryUnaryMultiCallable[_Req, _Resp], req: _Req, timeout: float | None = None) -> _Resp:
        try:
            return method(req, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED and e.details() == "Method not found!":  # grpc's own answer
                raise MpcError(e.code(), f"endpoint: {quote(self.endpoint)} does not serve this call of the Coordinator "
                               "service (not the coordinator's address, or an older version)") from None
            raise MpcError(e.code(), e.details() or "") from None

    def _me(self) -> Identity:
        if self.identity is None:
            raise MpcError(grpc.StatusCode.FAILED_PRECONDITION, "identity: this client has no signing key (use from_cluster(identity=...))")
        return self.identity

    # --- keys --------------------------------------------------------------------------------
    def create_key(self, label: str = "", *, request_id: str = "", scheme: str = SCHEME_ECDSA) -> Key:
        """A new key by DKG. ``scheme`` (issue 16): ``ecdsa-secp256k1`` (default), ``ed25519`` or
        ``schnorr-secp256k1-bip340`` (INVALID_ARGUMENT naming ``scheme`` otherwise); the key the
        coordinator answers must have it (DATA_LOSS otherwise)."""
        scheme = check_scheme(scheme)
        r = self._call(self._stub.CreateKey, coordinator_pb2.CreateKeyRequest(
            label=label, request_id=request_id, scheme="" if scheme == SCHEME_ECDSA else scheme,
        ))
        key = Key.from_proto(r.key)
        if key.scheme != scheme:
            raise MpcError(grpc.StatusCode.DATA_LOSS, f"scheme: asked for a {scheme} key, the coordinator answered with a {key.scheme} key")
        return key

    def get_key(self, key_id: bytes | str) -> Key:
        kid = bytes.fromhex(key_id) if isinstance(key_id, str) else key_id
        key = Key.from_proto(self._call(self._stub.GetKey, coordinator_pb2.GetKeyRequest(key_id=kid)))
        if key.key_id != kid:
            raise MpcError(
                grpc.StatusCode.DATA_LOSS, f"key_id: asked for key {kid.hex()}, the coordinator answered with key {key.key_id.hex()}"
            )
        return key

    def list_keys(self) -> list[Key]:
        return [Key.from_proto(k) for k in self._call(self._stub.ListKeys, coordinator_pb2.ListKeysRequest()).keys]

    def get_request(self, request_id: str) -> RequestInfo:
        r = self._call(self._stub.GetRequest, coordinator_pb2.GetRequestRequest(request_id=request_id))
        if r.request_id != request_id:
            raise MpcError(
                grpc.StatusCode.DATA_LOSS,
                f"request_id: asked for request {quote(request_id)}, the coordinator answered with request {quote(r.request_id)}",
            )
        sig: SignatureResult | SchnorrSignature | None = None
        if r.HasField("signature") and r.signature.schnorr:  # issue 16: the request's own view checks it fully
            sig = self.get_sign_request(request_id).signature
            if not isinstance(sig, SchnorrSignature) or sig.signature != bytes(r.signature.schnorr):
                raise MpcError(grpc.StatusCode.DATA_LOSS, "signature: is not the signature of the request (the coordinator sent another)")
        elif r.HasField("signature"):
            sig = SignatureResult.from_proto(r.request_id, r.signature, r.signers)
        if isinstance(sig, SignatureResult):  # as in every other view: over the request's digest, by its key at its path
            if not sig.recovers_to(bytes(r.digest)):
                raise MpcError(
                    grpc.StatusCode.DATA_LOSS,
                    "signature: does not recover its public_key from the request's digest (the coordinator sent a malformed signature)",
                )
            try:
                want = self.get_key(bytes(r.key_id)).derive(tuple(r.derivation_path))
            except PathError as e:
                raise MpcError(grpc.StatusCode.DATA_LOSS, f"{e.message} (the coordinator sent a malformed request)") from None
            if sig.public_key != want:
                raise MpcError(
                    grpc.StatusCode.DATA_LOSS,
                    f"signature.public_key: {sig.public_key.hex()} is not key {bytes(r.key_id).hex()} at "
                    f"{path_text(r.derivation_path)} ({want.hex()}) (the coordinator sent a signature by another key)",
                )
        return RequestInfo(
            r.request_id, _KIND[r.kind].removeprefix("REQUEST_KIND_").lower(), _STATE[r.state].removeprefix("REQUEST_STATE_").lower(),
            bytes(r.key_id), _code_name(r.error_code) if r.error_code else "", r.error_message, sig, r.attempts,
        )

    def cluster_status(self) -> coordinator_pb2.ClusterStatusResponse:
        return self._call(self._stub.ClusterStatus, coordinator_pb2.ClusterStatusRequest(), timeout=10)

    def presign_status(self) -> PresignStatus:
        """:meth:`cluster_status`'s presignature pools, typed (:class:`PresignStatus`: whether the
        coordinator keeps pools, and each pool's depth); DATA_LOSS for a malformed pool."""
        return PresignStatus.from_proto(self.cluster_status())

    def node_states(self) -> list[NodeState]:
        """:meth:`cluster_status`'s nodes, typed."""
        return [NodeState.from_proto(n) for n in self.cluster_status().nodes]

    # --- signing requests --------------------------------------------------------------------
    def submit_sign_request(
        self, key_id: bytes | str, digest: bytes = b"", *, path: str | Sequence[int] | None = None, description: str = "",
        request_id: str = "", ttl_seconds: int = 0, message: bytes = b"", taproot_merkle_root: bytes = b"",
    ) -> SignRequest:
        """Submits a signing request. ECDSA and bip340 keys sign the 32-byte ``digest`` (bip340:
        the BIP340 message, e.g. a Taproot sighash, under the output key tweaked with
        ``taproot_merkle_root``: b"" for BIP86 or 32 bytes). Ed25519 keys sign ``message``
        (1..65536 bytes; ``digest`` then b"" or its SHA-256, which the approvers sign). A bad field
        is INVALID_ARGUMENT naming it, before anything is sent; the coordinator's answer must be
        the request submitted (DATA_LOSS otherwise)."""
        kid = bytes.fromhex(key_id) if isinstance(key_id, str) else key_id
        if message:
            check_message(message)
            if digest and not hmac.compare_digest(digest, hashlib.sha256(message).digest()):
                raise MpcError(grpc.StatusCode.INVALID_ARGUMENT, "digest: must be empty or the SHA-256 of message")
            digest = hashlib.sha256(message).digest()
        check_taproot_root(taproot_merkle_root)
        req = coordinator_pb2.SubmitSignRequestRequest(
            key_id=kid, digest=digest, derivation_path=to_path(path), description=description, request_id=request_id,
            ttl_seconds=ttl_seconds, message=message, taproot_merkle_root=taproot_merkle_root,
        )
        got = self.verify_approvals(self._signed_by_its_key(SignRequest.from_proto(self._call(self._stub.SubmitSignRequest, req))))
        q = got.request
        for what, have, want in (
            ("request_id", q.request_id, request_id or q.request_id), ("key_id", q.key_id, kid), ("digest", q.digest, digest),
            ("derivation_path", q.derivation_path, tuple(req.derivation_path)), ("description", q.description, description),
            ("taproot_root", q.taproot_root, taproot_merkle_root), ("message", got.message, message),
        ):
            if have != want:
                raise MpcError(
                    grpc.StatusCode.DATA_LOSS,
                    f"request.{what}: the coordinator answered with a request that is not the one submitted "
                    f"(request {quote(q.request_id)})",
                )
        return self._pinned(got)

    def get_sign_request(self, request_id: str) -> SignRequest:
        r = self._call(self._stub.GetSignRequest, coordinator_pb2.GetSignRequestRequest(request_id=request_id))
        return self._checked_request(r, request_id)

    def request_policy(self, q: SigningRequest) -> KeyPolicy:
        """The policy request ``q`` was made under (its key's own policy or the default, version
        ``q.policy_version``, ``digest()`` equal to ``q.policy_digest``), as the coordinator reports
        it and verified here: the policy in force must carry an admin quorum of *our* admin set
        (:meth:`get_policy`); an older one is looked up in the key's and then the default scope's
        history, verified change by change (:meth:`policy_history`). Cached per (key, version,
        digest) for the client's life (a digest names one policy), so a view costs one fetch.

        Raises :class:`MpcError`: FAILED_PRECONDITION without an admin set (no cluster.json) or
        when no such admin-signed policy is found; DATA_LOSS for a policy without an admin quorum
        of our admin set; the coordinator's error when it cannot be fetched."""
        return self._request_policy(q)[0]

    def _request_policy(self, q: SigningRequest) -> tuple[KeyPolicy, _InForce]:
        """:meth:`request_policy`, and the policy in force for ``q``'s key: (is it the request's,
        its version, "key" | "default"). "It is the request's" is taken as known for
        ``_IN_FORCE_TTL_S``; a superseded policy stays superseded (versions only grow), so that
        answer is cached for good."""
        admins: AdminSet | None = getattr(self, "admin_set", None)
        if admins is None:
            raise MpcError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "admin_set: unknown (no cluster.json), so the request's policy and its approvers' keys cannot be checked",
            )
        ref = (q.key_id, q.policy_version, q.policy_digest)
        cache: dict[_PolicyRef, KeyPolicy] = self.__dict__.setdefault("_policies", {})
        in_force_at: dict[_PolicyRef, tuple[float, _InForce]] = self.__dict__.setdefault("_in_force_at", {})
        superseded: dict[_PolicyRef, _InForce] = self.__dict__.setdefault("_superseded", {})
        hit = cache.get(ref)
        if hit is not None and ref in superseded:
            return hit, superseded[ref]
        seen = in_force_at.get(ref)
        if hit is not None and seen is not None and time.monotonic() - seen[0] < _IN_FORCE_TTL_S:
            return hit, seen[1]

        def named(p: KeyPolicy) -> bool:
            return p.version == q.policy_version and hmac.compare_digest(p.digest(), q.policy_digest)

        current = self.get_policy(q.key_id)  # DATA_LOSS without an admin quorum of ours
        in_force = (named(current.policy), current.policy.version, "default" if current.scope == DEFAULT_SCOPE else "key")
        if in_force[0]:
            cache[ref] = current.policy
            in_force_at[ref] = (time.monotonic(), in_force)
            return current.policy, in_force
        found = hit
        for kid in (q.key_id, None):
            if found is not None:
                break
            # a request made under an older policy: every change of the history is verified
            found = next((s.change.new_policy for s in self.policy_history(kid) if named(s.change.new_policy)), None)
        if found is None:
            raise MpcError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"policy: the coordinator reports no admin-signed policy version {q.policy_version} with digest "
                f"{q.policy_digest.hex()[:16]}... for key {q.key_id.hex()[:16]}... (the policy the request names)",
            )
        cache[ref] = found
        superseded[ref] = in_force
        return found, in_force

    def verify_approvals(self, r: SignRequest, failed: dict[_PolicyRef, str] | None = None) -> SignRequest:
        """``r`` with each approval checked, never taken on the coordinator's word: an approval
        counts (``verified``) only if its signature verifies over ``r.request``'s canonical bytes
        by an approver of the policy the request names (:meth:`request_policy`); then
        ``approvals_verified`` is True and ``approval_quorum``/``approvers`` are that policy's.
        When the policy cannot be established, no approval counts and ``approvals_note`` says why.
        ``policy_in_force`` says whether that policy is the one in force for the key now (the
        only one the nodes sign under; else ``policy_in_force_version`` is the version that is).
        ``failed``: policies that could not be established in this view (not fetched again)."""
        ref = (r.request.key_id, r.request.policy_version, r.request.policy_digest)
        note = None if failed is None else failed.get(ref)
        policy = None
        in_force: _InForce | None = None
        if note is None:
            try:
                policy, in_force = self._request_policy(r.request)
            except MpcError as e:
                note = f"the request's policy could not be checked: {e.message[:300]}"
                if failed is not None:
                    failed[ref] = note
        if policy is None or in_force is None:
            why = note or "not checked"
            return replace(
                r, approvals=tuple(replace(a, verified=False, why=why) for a in r.approvals), approvals_verified=False,
                approvals_note=why,
            )
        views = []
        limit = 2 * len(policy.approvers)  # each approver decides once: the rest is padding, not checked (bounded cost)
        first: dict[str, int] = {}  # approver -> index of their verified decision (only the first counts, as in a tally)
        for i, a in enumerate(r.approvals):
            if i >= limit:
                views.append(replace(a, verified=False, why=f"approvals: more than {limit} listed for {len(policy.approvers)} approvers"))
                continue
            if a.approver in first:
                why = f"approver: already decided in approvals[{first[a.approver]}] (a repeat does not count)"
                views.append(replace(a, verified=False, why=why))
                continue
            try:
                decision = Decision.APPROVE if a.decision == "approve" else Decision.REJECT
                check_approval_once(policy, r.request, Approval(a.approver, decision, a.signature), self._own_approvals())
                views.append(replace(a, verified=True, why=""))
                first[a.approver] = i
            except GovernanceError as e:
                views.append(replace(a, verified=False, why=f"{e.field}: {e.reason}"))
        return replace(
            r, approvals=tuple(views), approval_quorum=policy.approval_quorum, approvers=len(policy.approvers),
            approvals_verified=True, approvals_note="", policy_in_force=in_force[0],
            policy_in_force_version=in_force[1], policy_in_force_scope=in_force[2],
        )

    def _signing_keys(self) -> SigningKeyCache:
        """Issue 14: this client's :class:`~mpcnet.client.signing_keys.SigningKeyCache` (made at
        first use, also for clients built without ``__init__``, as the tests' fakes are)."""
        cache: SigningKeyCache | None = self.__dict__.get("_signing_key_cache")
        if cache is None:
            cache = self.__dict__.setdefault("_signing_key_cache", SigningKeyCache())
        return cache

    def _signed_by_its_key(self, r: SignRequest, keys: dict[bytes, Key] | None = None) -> SignRequest:
        """``r`` if it has no signature yet, or its signature's public key is the request's key
        (as :meth:`get_key` reports it, so the signature verifies under the key and address a user
        is shown) derived along the request's path; else DATA_LOSS. ``keys``: keys already
        fetched in this view (each fetched once)."""
        if r.signature is None:
            return r
        q = r.request
        pins = self._signing_keys()
        want = pins.get(q)
        if want is None:
            key = None if keys is None else keys.get(q.key_id)
            if key is None:
                key = self.get_key(q.key_id)
                if keys is not None:
                    keys[q.key_id] = key
            if key.scheme != q.scheme:
                raise MpcError(grpc.StatusCode.DATA_LOSS, f"request.scheme: {q.scheme} is not key {q.key_id.hex()}'s ({key.scheme})")
            want = key.derive(q.derivation_path) if key.scheme == SCHEME_ECDSA else signing_key(key.scheme, key.public_key, q.taproot_root)
            pins.put(q, want)
        if r.signature.public_key != want:
            raise MpcError(
                grpc.StatusCode.DATA_LOSS,
                f"signature.public_key: {r.signature.public_key.hex()} is not key {q.key_id.hex()} at "
                f"{path_text(q.derivation_path)} ({want.hex()}) (the coordinator sent a signature by another key)",
            )
        return r

    def _checked_request(self, msg: coordinator_pb2.SignRequestInfo, request_id: str) -> SignRequest:
        """The coordinator's answer about request ``request_id``, taken only as far as it is
        checked here: it is that request (:func:`_the_request`), with the bytes this client saw
        under the id (:meth:`_pinned`), a signature (if any) by its key (:meth:`_signed_by_its_key`)
        and its approvals verified (:meth:`verify_approvals`)."""
        return self.verify_approvals(self._signed_by_its_key(self._pinned(_the_request(SignRequest.from_proto(msg), request_id))))

    def _pinned(self, r: SignRequest) -> SignRequest:
        """``r`` if its canonical request is the one this client already saw under its id
        (submitted, signed, shown, waited for; the newest few thousand), else DATA_LOSS: a
        request's bytes never change, so other bytes under the same id (another digest, key,
        path, expiry) are the coordinator's substitution, e.g. to show an approver another request
        than the one just signed or end a requester's wait with another digest's signature."""
        known: dict[str, bytes] = self.__dict__.setdefault("_requests_seen", {})
        was = known.get(r.request_id)
        if was is not None and not hmac.compare_digest(was, r.request_bytes):
            raise MpcError(
                grpc.StatusCode.DATA_LOSS,
                f"request: the coordinator answered with another request under the id {quote(r.request_id)} than the one "
                f"this client saw (digest {r.request.digest.hex()[:16]}...)",
            )
        if was is None:
            if len(known) >= _PINNED_REQUESTS:
                del known[next(iter(known))]
            known[r.request_id] = r.request_bytes
        return r

    def list_sign_requests(self, *, state: str | None = None, key_id: bytes | str | None = None, limit: int = 0) -> list[SignRequest]:
        kid = bytes.fromhex(key_id) if isinstance(key_id, str) else (key_id or b"")
        pb_state: str | None = None  # the enum value's name (protobuf accepts it): unset is UNSPECIFIED
        if state is not None:
            names = {v: coordinator_pb2.SignRequestState.Name(k) for k, v in _SIGN_STATE.items()}
            if state not in names:
                raise ValueError(f"state: must be one of {', '.join(SIGN_STATES)}")
            pb_state = names[state]
        r = self._call(self._stub.ListSignRequests, coordinator_pb2.ListSignRequestsRequest(state=pb_state, key_id=kid, limit=limit))
        failed: dict[_PolicyRef, str] = {}
        keys: dict[bytes, Key] = {}  # a signature must be by its request's key, as in every other view
        return [self.verify_approvals(self._signed_by_its_key(SignRequest.from_proto(x), keys), failed) for x in r.requests]

    def watch_sign_request(
        self, request_id: str, *, timeout: float | None = None, on_retry: Callable[[str], None] | None = None,
    ) -> Iterator[SignRequest]:
        """The request now and after each change of its state, until it reaches a final state
        (DONE, REJECTED, EXPIRED, FAILED; yielded last), for at most ``timeout`` seconds (None:
        until it ends; the client's per-call ``timeout`` bounds each stream, not the watch).

        Server streams end after a while (the coordinator's ``stream_lifetime_s``), connections
        drop and coordinators restart: the watch then resumes (at once after a stream the server
        ended, else after a backoff of 0.2 s doubling to 5 s), never yielding the same state
        twice. RESOURCE_EXHAUSTED (the coordinator's streams are all taken) is retried, and once
        the coordinator answered also UNAVAILABLE, CANCELLED, ABORTED and DEADLINE_EXCEEDED,
        until ``timeout`` (INTERNAL and UNKNOWN, which a reset stream gives, at most 3 times
        without a change in between); any other error, and those before the first answer (e.g.
        a wrong endpoint, a coordinator that is down), raise :class:`MpcError`. When ``timeout`` passes
        it raises ``MpcError(DEADLINE_EXCEEDED, "request ID still STATE after N s")``; ValueError
        for a ``timeout`` that is not a number > 0 (infinity means None). ``on_retry`` is called
        with one line (code and the server's text) when the watch starts retrying after an error,
        once per run of errors (again only after an answer came in between), so a caller can say
        why a wait shows nothing."""
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout: must be a number of seconds > 0 or None, got {timeout!r}")
        if timeout == float("inf"):
            timeout = None
        deadline = None if timeout is None else time.monotonic() + timeout
        req = coordinator_pb2.GetSignRequestRequest(request_id=request_id)
        last: SignRequest | None = None
        last_bytes = b""
        backoff = _WATCH_BACKOFF_S[0]
        odd_in_a_row = 0
        told = False  # on_retry was called for the current run of errors

        def left(slack: float = 0.0) -> float | None:
            """Seconds until ``timeout`` (None: no limit); raises the timeout error within ``slack`` of it."""
            if deadline is None:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= slack:
                state = last.state if last is not None else "unknown"
                raise MpcError(grpc.StatusCode.DEADLINE_EXCEEDED, f"request {request_id} still {state} after {timeout:g} s")
            return remaining

        while True:
            # each stream is one call, bounded by the client's per-call timeout (the wait is not: it
            # resumes): a coordinator that hangs without closing the connection is noticed
            remaining = left()
            per_stream = remaining if not self.timeout else self.timeout if remaining is None else min(remaining, self.timeout)
            stream = self._stub.WatchSignRequest(req, timeout=per_stream)
            started = time.monotonic()
            answered = False  # this stream brought a message (every stream starts with the current state)
            try:
                for r in stream:
                    answered = True
                    data = r.SerializeToString(deterministic=True)
                    if data == last_bytes:  # the state a resumed stream starts with
                        continue
                    odd_in_a_row, told = 0, False
                    last_bytes = data
                    last = self._checked_request(r, request_id)  # a failed policy fetch is tried again at the next change
                    yield last
                    if last.state in TERMINAL_STATES:
                        return
                if time.monotonic() - started >= 1.0:
                    backoff = _WATCH_BACKOFF_S[0]
                    continue  # the server ended the stream (its lifetime): watch again at once
                # ended at once (e.g. the coordinator is stopping): back off as after an error
            except grpc.RpcError as e:
                code = e.code()
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    left(slack=0.1)  # our timeout passed (by grpc's clock): raises the message that says so
                    if answered:  # the per-call timeout of a stream that answered: as if the server ended it
                        backoff = _WATCH_BACKOFF_S[0]
                        continue
                # a reset stream (INTERNAL "RST_STREAM", UNKNOWN "Stream removed") may be the transport:
                # retried, but only a few times in a row (else it is the server's answer)
                odd = code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
                odd_in_a_row = odd_in_a_row + 1 if odd else 0
                retry = code in _WATCH_RETRY or (odd and odd_in_a_row <= _WATCH_ODD_RETRIES)
                if not retry or (last is None and code != grpc.StatusCode.RESOURCE_EXHAUSTED):
                    raise MpcError(code, e.details() or "") from None
                if on_retry is not None and not told:
                    told = True
                    on_retry(f"{code.name}: {e.details() or ''}")
            finally:
                stream.cancel()
            remaining = left()
            time.sleep(backoff if remaining is None else min(backoff, remaining))
            backoff = min(backoff * 2, _WATCH_BACKOFF_S[1])

    def wait_sign_request(
        self, request_id: str, *, timeout: float | None = None, on_retry: Callable[[str], None] | None = None,
    ) -> SignRequest:
        """Wait until the request reaches DONE, REJECTED, EXPIRED or FAILED and return it, for at
        most ``timeout`` seconds (None: until it ends). Resumes across ended streams, reconnects
        and coordinator restarts as :meth:`watch_sign_request` does; raises
        ``MpcError(DEADLINE_EXCEEDED, "request ID still STATE after N s")`` when ``timeout``
        passes first; ``on_retry`` as in :meth:`watch_sign_request`."""
        for r in self.watch_sign_request(request_id, timeout=timeout, on_retry=on_retry):
            if r.state in TERMINAL_STATES:
                return r
        raise MpcError(grpc.StatusCode.INTERNAL, f"request {request_id}: the watch ended before a final state")  # not reached

    def decide(
        self, request_id: str, decision: Decision, *, expect_digest: bytes | None = None,
        expect_key: bytes | None = None, expect_path: str | Sequence[int] | None = None,
        seen: SignRequest | None = None, wait_done_ms: int = 0,
    ) -> SignRequest:
        """Sign ``decision`` over the request *as the coordinator sent it* (decoded and checked
        here) with this identity's own key, and submit it. With ``expect_digest`` nothing is
        signed unless the request is for exactly that digest; likewise ``expect_key`` (key id)
        and ``expect_path`` (derivation path): the same digest signed by another key or derived
        key (another account) is another signature.

        ``seen``: the request as a trusted party already holds it (its canonical bytes, decoded
        strictly: e.g. what :meth:`submit_sign_request` returned to a :class:`SigningTeam`'s
        requester, checked there against what was submitted); the decision is signed over it
        without fetching it again (one round trip less). It must be the request ``request_id``
        and, like any view, the bytes this client saw under that id (else DATA_LOSS).

        ``wait_done_ms`` (0 to 5000, issue 14): if this decision moves the request to SIGNING, the
        coordinator answers once the signing ended (DONE with its signature, checked here as any
        view) or after that many milliseconds (then SIGNING: :meth:`wait_sign_request`)."""
        me = self._me()
        if seen is not None and not hmac.compare_digest(seen.request.encode(), seen.request_bytes):
            raise MpcError(grpc.StatusCode.INVALID_ARGUMENT, "seen: its request is not its canonical request_bytes; nothing was signed")
        if seen is not None and seen.request.request_id != seen.request_id:
            raise MpcError(grpc.StatusCode.INVALID_ARGUMENT, "seen: its request_id is not the id inside its request; nothing was signed")
        current = self.get_sign_request(request_id) if seen is None else self._pinned(_the_request(seen, request_id))
        q = current.request
        want_path = None if expect_path is None else to_path(expect_path)
        for what, got, want in (
            ("digest", q.digest.hex(), None if expect_digest is None else expect_digest.hex()),
            ("key_id", q.key_id.hex(), None if expect_key is None else expect_key.hex()),
            ("derivation_path", path_text(q.derivation_path), None if want_path is None else path_text(want_path)),
        ):
            if want is not None and got != want:
                raise MpcError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"{what}: request {request_id} is for {what} {got}, not the expected {want}; nothing was signed",
                )
        now = time.time_ns() // 1_000_000
        if decision is Decision.APPROVE and q.created_at_ms > now + APPROVE_CLOCK_SLACK_MS:
            raise MpcError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"created_at_ms: request {request_id} claims to be created {(q.created_at_ms - now) / 1000:.0f} s in the "
                "future by this machine's clock (approvals for it would stay usable later); nothing was signed",
            )
        if decision is Decision.APPROVE and q.expires_at_ms <= now:
            raise MpcError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"expires_at_ms: request {request_id} already expired by this machine's clock; nothing was signed",
            )
        approval = sign_approval(current.request, me.name, me.signing_key, decision)
        self._remember_own(current.request, approval, me)
        pb = coordinator_pb2.DECISION_APPROVE if decision is Decision.APPROVE else coordinator_pb2.DECISION_REJECT
        r = self._call(
            self._stub.DecideSignRequest,
            coordinator_pb2.DecideSignRequestRequest(
                request_id=request_id, approver=me.name, decision=pb, signature=approval.signature, wait_done_ms=wait_done_ms,
            ),
        )
        return self._checked_request(r, request_id)

    def _remember_own(self, q: SigningRequest, approval: Approval, me: Identity) -> None:
        """Issue 14: the answer to a decision lists it again; when the request's policy (as
        :meth:`request_policy` establishes it, the same lookup the answer's check makes) names
        this identity's own public key for it, it is remembered as verified
        (:meth:`~mpcnet.client.approval_cache.OwnApprovals.remember`), so the answer's check does not
        verify this client's own fresh signature again (only this client's: other clients of the
        process verify it as separate processes would). Otherwise (or when the policy cannot be
        established now) nothing is remembered and the answer's check runs in full."""
        try:
            policy = self._request_policy(q)[0]
        except Exception:  # a speed-up only: without it the answer's check runs in full
            return
        self._own_approvals().remember(policy, q, approval, me.public_key)

    def _own_approvals(self) -> OwnApprovals:
        """This client's :class:`~mpcnet.client.approval_cache.OwnApprovals` (made at first use,
        also for clients built without ``__init__``, as the tests' fakes are)."""
        own: OwnApprovals | None = self.__dict__.get("_own_approval_keys")
        if own is None:
            own = self.__dict__.setdefault("_own_approval_keys", OwnApprovals())
        return own

    def approve(
        self, request_id: str, *, expect_digest: bytes | None = None, expect_key: bytes | None = None,
        expect_path: str | Sequence[int] | None = None, seen: SignRequest | None = None, wait_done_ms: int = 0,
    ) -> SignRequest:
        """:meth:`decide` with :attr:`Decision.APPROVE` (``seen`` and ``wait_done_ms`` as there)."""
        return self.decide(
            request_id, Decision.APPROVE, expect_digest=expect_digest, expect_key=expect_key, expect_path=expect_path,
            seen=seen, wait_done_ms=wait_done_ms,
        )

    def reject(self, request_id: str) -> SignRequest:
        return self.decide(request_id, Decision.REJECT)

    # --- policies ----------------------------------------------------------------------------
    def get_policy(self, key_id: bytes | str | None = None) -> PolicyView:
        kid = bytes.fromhex(key_id) if isinstance(key_id, str) else (key_id or b"")
        r = self._call(self._stub.GetPolicy, coordinator_pb2.GetPolicyRequest(key_id=kid))
        try:
            signed = SignedPolicyChange.from_bytes(bytes(r.policy.signed_change))
        except GovernanceError as e:
            raise MpcError(grpc.StatusCode.DATA_LOSS, f"policy.signed_change.{e.field}: {e.reason}") from None
        scope = signed.change.scope
        inherited = bool(kid) and scope == DEFAULT_SCOPE
        if scope not in (kid or DEFAULT_SCOPE, DEFAULT_SCOPE) or bytes(r.scope) != scope or r.inherited != inherited:
            raise MpcError(
                grpc.StatusCode.DATA_LOSS,
                f"policy: asked for the policy of {kid.hex() if kid else 'the default scope'}, the coordinator answered with "
                f"the policy of {'the default scope' if scope == DEFAULT_SCOPE else scope.hex()} "
                f"({'inherited' if r.inherited else 'not inherited'})",
            )
        if self.admin_set is not None:
            self._check_quorum(signed)
        return PolicyView(scope, signed.change.new_policy, inherited, signed, _admin_signers(self.admin_set, signed))

    def _check_quorum(self, signed: SignedPolicyChange) -> None:
        """The policy the coordinator reports must carry an admin quorum of *our* admin set."""
        assert self.admin_set is not None
        good = _admin_signers(self.admin_set, signed) or ()
        if len(good) < self.admin_set.quorum:
            raise MpcError(
                grpc.StatusCode.DATA_LOSS,
                f"policy: the coordinator reports a policy without a valid admin quorum ({len(good)} of {self.admin_set.quorum})",
            )

    def propose_policy(self, new_policy: KeyPolicy, *, key_id: bytes | str | None = None, push: bool = True) -> Proposal:
        """Propose ``new_policy`` for a key (or the default), signed with this admin's key. Its
        version must be the current one + 1 (see :meth:`next_policy`). If this alone applies it
        (an admin quorum of 1) and ``push``, the change and a fresh attestation go to every node
        directly (:meth:`complete`)."""
        me = self._me()
        if self.admin_set is None:
            raise MpcError(grpc.StatusCode.FAILED_PRECONDITION, "admin_set: unknown (use from_cluster)")
        kid = bytes.fromhex(key_id) if isinstance(key_id, str) else key_id
        current = self.get_policy(kid)
        own = current.signed_change if not current.inherited else None
        scope = kid if kid else DEFAULT_SCOPE
        previous = None if own is None else own.change.new_policy.digest()
        change = PolicyChange(scope, new_policy, previous, self.admin_set.digest())
        signed = SignedPolicyChange(change, (sign_policy_change(change, me.name, me.signing_key),))
        r = self._call(self._stub.ProposePolicyChange, coordinator_pb2.ProposePolicyChangeRequest(signed_change=signed.to_bytes()))
        return self.complete(self._proposal(r)) if push else self._proposal(r)

    def next_policy(self, key_id: bytes | str | None = None, **changes: Any) -> KeyPolicy:
        """The policy in force for a key (or the default) with ``changes`` (KeyPolicy fields, e.g.
        ``refresh_period_s``) applied and the version the next change of that scope must carry.
        GovernanceError naming the field if the result is not a valid policy."""
        kid = bytes.fromhex(key_id) if isinstance(key_id, str) else key_id
        current = self.get_policy(kid)
        version = 1 if (kid and current.inherited) else current.policy.version + 1
        base = current.policy
        fields: dict[str, Any] = {
            "version": version, "approvers": dict(base.approvers), "approval_quorum": base.approval_quorum,
            "requesters": base.requesters, "ttl_seconds": base.ttl_seconds, "rate_limit": base.rate_limit,
            "refresh_period_s": base.refresh_period_s,  # kept unless changed (0: none)
        }
        fields.update(changes)
        return KeyPolicy(**fields)

    def approve_policy(self, proposal_id: str, *, push: bool = True) -> Proposal:
        """Sign a pending proposal (after checking it is for this cluster) and submit it; if that
        applies it and ``push``, send the change and a fresh attestation to every node directly
        (:meth:`complete`)."""
        me = self._me()
        p = self.get_proposal(proposal_id)
        if self.admin_set is not None and p.signed_change.change.governance_root != self.admin_set.digest():
            raise MpcError(grpc.StatusCode.FAILED_PRECONDITION, "proposal: made for another cluster or admin set")
        sig: AdminSignature = sign_policy_change(p.signed_change.change, me.name, me.signing_key)
        r = self._call(
            self._stub.ApprovePolicyChange,
            coordinator_pb2.ApprovePolicyChangeRequest(proposal_id=proposal_id, admin=me.name, signature=sig.signature),
        )
        return self.complete(self._proposal(r)) if push else self._proposal(r)

    def get_proposal(self, proposal_id: str) -> Proposal:
        p = self._proposal(self._call(self._stub.GetPolicyProposal, coordinator_pb2.GetPolicyProposalRequest(proposal_id=proposal_id)))
        if p.proposal_id != proposal_id:  # approve_policy would sign another change than the one named
            raise MpcError(
                grpc.StatusCode.DATA_LOSS,
                f"proposal_id: asked for proposal {quote(proposal_id)}, the coordinator answered with proposal {p.proposal_id}",
            )
        return p

    def list_proposals(self, state: str | None = None) -> list[Proposal]:
        names = {v: coordinator_pb2.ProposalState.Name(k) for k, v in _PROPOSAL_STATE.items()}
        r = self._call(self._stub.ListPolicyProposals, coordinator_pb2.ListPolicyProposalsRequest(state=names[state] if state else None))
        return [self._proposal(p) for p in r.proposals]

    def _proposal(self, r: coordinator_pb2.PolicyProposal) -> Proposal:
        """The proposal as sent, its admin signatures verified against our admin set (the
        admin quorum shown is our admin set's, not the coordinator's word, when we know it)."""
        try:
            signed = SignedPolicyChange.from_bytes(bytes(r.signed_change))
        except GovernanceError as e:
            raise MpcError(grpc.StatusCode.DATA_LOSS, f"proposal.signed_change.{e.field}: {e.reason}") from None
        if signed.change.digest()[:16].hex() != r.proposal_id:
            raise MpcError(grpc.StatusCode.DATA_LOSS, f"proposal: id {r.proposal_id} does not match its change")
        admins: AdminSet | None = getattr(self, "admin_set", None)
        return Proposal(
            r.proposal_id, _PROPOSAL_STATE.get(r.state, "unspecified"), signed, r.proposer,
            admins.quorum if admins is not None else r.admin_quorum, r.created_unix_ms,
            verified_signers=_admin_signers(admins, signed),
        )

    # --- direct pushes to the nodes (admins) -------------------------------------------------
    def complete(self, p: Proposal) -> Proposal:
        """For an applied proposal (with known node endpoints): push the change to every node
        directly, then a fresh attestation; the outcomes are in ``pushed``."""
        if p.state != "applied" or not self.node_endpoints:
            return p
        applied = p.signed_change
        scope = applied.change.scope
        key_id = None if scope == DEFAULT_SCOPE else scope
        history = self.policy_history(key_id)
        if not any(h.change.digest() == applied.change.digest() for h in history):
            # the coordinator says "applied" but does not report it: push what we signed
            history = [*history, applied]
        out = self.push_policy(key_id, history=history)
        for node, outcome in self.attest(known=[applied]).items():
            out[node] = f"{out[node]}; attestation {outcome}" if node in out else f"attestation {outcome}"
        return replace(p, pushed=out)

    def _node_stub(self, name: str) -> node_pb2_grpc.NodeStub:
        ch = self._node_channels.get(name)
        if ch is None:
            ch = self._node_channels[name] = grpc.secure_channel(self.node_endpoints[name], self._creds, options=CHANNEL_OPTIONS)
        return node_pb2_grpc.NodeStub(ch)

    def _nodes(self) -> list[str]:
        if not self.node_endpoints:
            raise MpcError(grpc.StatusCode.FAILED_PRECONDITION, "nodes: no node endpoints known (use from_cluster with a cluster.json)")
        return sorted(self.node_endpoints)

    def list_policies(self) -> tuple[list[SignedPolicyChange], bytes]:
        """Every scope's change in force, as the coordinator reports it (each checked to carry a
        quorum of our admin set), and the newest attestation it holds (bytes, maybe empty)."""
        r = self._call(self._stub.ListPolicies, coordinator_pb2.ListPoliciesRequest())
        out = []
        for i, st in enumerate(r.policies):
            try:
                signed = SignedPolicyChange.from_bytes(bytes(st.signed_change))
            except GovernanceError as e:
                raise MpcError(grpc.StatusCode.DATA_LOSS, f"policies[{i}].signed_change.{e.field}: {e.reason}") from None
            if self.admin_set is not None:
                self._check_quorum(signed)
            out.append(signed)
        return out, bytes(r.policy_attestation)

    def policy_history(self, key_id: bytes | str | None = None) -> list[SignedPolicyChange]:
        """The signed change history of a key's own policy (or the default), oldest first,
        verified here change by change against our admin set; every change must be of the scope
        asked for (another key's or the default's admin-signed changes, which chain just as well,
        are refused: DATA_LOSS)."""
        kid = bytes.fromhex(key_id) if isinstance(key_id, str) else (key_id or b"")
        r = self._call(self._stub.GetPolicyHistory, coordinator_pb2.GetPolicyHistoryRequest(key_id=kid))
        out: list[SignedPolicyChange] = []
        current: KeyPolicy | None = None
        for i, data in enumerate(r.signed_changes):
            try:
                signed = SignedPolicyChange.from_bytes(bytes(data))
                if signed.change.scope != (kid or DEFAULT_SCOPE):
                    raise GovernanceError(
                        "scope", f"is {_scope_text(signed.change.scope)}, not the {_scope_text(kid or DEFAULT_SCOPE)} asked for "
                        "(the coordinator sent another scope's change)",
                    )
                if self.admin_set is not None:
                    current = verify_policy_change(self.admin_set, current, signed.change, signed.signatures)
            except GovernanceError as e:
                raise MpcError(grpc.StatusCode.DATA_LOSS, f"signed_changes[{i}].{e.field}: {e.reason}") from None
            out.append(signed)
        return out

    def push_policy(
        self, key_id: bytes | str | None = None, *, history: Sequence[SignedPolicyChange] | None = None
    ) -> dict[str, str]:
        """Install the scope's signed history (from the coordinator, verified here; or the
        given one, oldest first) on every node directly (each node verifies every change itself).
        Returns node name -> ``installed N`` / ``already`` / ``ahead: ...`` / ``error: ...``."""
        history = list(history) if history is not None else self.policy_history(key_id)
        scope = history[-1].change.scope if history else None
        out: dict[str, str] = {}
        for name in self._nodes():
            stub = self._node_stub(name)
            installed = 0
            try:
                have = 0
                for st in stub.GetPolicies(node_pb2.GetPoliciesRequest(), timeout=10).policies:
                    if bytes(st.scope) == scope:
                        have = int(st.version)
                if have > len(history):
                    out[name] = f"ahead: holds version {have}, the coordinator reports {len(history)}"
                    continue
                # from the node's own version on (its current change again: a fork is refused there)
                for signed in history[max(have - 1, 0):]:
                    r = stub.InstallPolicy(node_pb2.InstallPolicyRequest(signed_change=signed.to_bytes()), timeout=10)
                    installed += int(r.installed)
            except grpc.RpcError as e:
                out[name] = f"error: {e.code().name}: {e.details() or ''}"
                continue
            out[name] = f"installed {installed}" if installed else "already"
        return out

    def _node_heads(self) -> tuple[dict[str, list[SignedPolicyChange]], dict[str, str]]:
        heads: dict[str, list[SignedPolicyChange]] = {}
        errors: dict[str, str] = {}
        for name in self._nodes():
            try:
                r = self._node_stub(name).GetPolicies(node_pb2.GetPoliciesRequest(), timeout=10)
                heads[name] = [SignedPolicyChange.from_bytes(bytes(p.signed_change)) for p in r.policies]
            except grpc.RpcError as e:
                errors[name] = f"error: {e.code().name}: {e.details() or ''}"
            except GovernanceError as e:
                errors[name] = f"error: policies: {e.field}: {e.reason}"
        return heads, errors

    def _quorum_ok(self, signed: SignedPolicyChange) -> bool:
        try:
            self._check_quorum(signed)
        except MpcError:
            return False
        return True

    def attest(self, *, issued_at_ms: int | None = None, known: Sequence[SignedPolicyChange] = ()) -> dict[str, str]:
        """Sign an attestation of every scope's newest head and send it to the coordinator and
        to every node directly. Heads come from the coordinator and, cross-checked, from the
        nodes (a head counts only with a valid admin quorum of our admin set; the newest version
        wins; two different heads of one version are refused). Returns node name (and
        ``coordinator``) -> outcome (``confirmed``, or why the node does not match yet).
        ``known``: changes the caller holds itself (e.g. one it just completed), counted too."""
        me = self._me()
        if self.admin_set is None:
            raise MpcError(grpc.StatusCode.FAILED_PRECONDITION, "admin_set: unknown (use from_cluster)")
        out: dict[str, str] = {}
        seen: list[SignedPolicyChange] = [s for s in known if self._quorum_ok(s)]
        try:
            coord, _ = self.list_policies()
            seen.extend(coord)
        except MpcError as e:
            out["coordinator"] = f"error: {e.code.name}: {e.message}"
        node_heads, errors = self._node_heads() if self.node_endpoints else ({}, {})
        out.update(errors)
        for hs in node_heads.values():
            seen.extend(s for s in hs if self._quorum_ok(s))
        best: dict[bytes, PolicyHead] = {}
        for signed in seen:
            if signed.change.governance_root != self.admin_set.digest():
                continue
            p = signed.change.new_policy
            h = PolicyHead(signed.change.scope, p.version, p.digest())
            cur = best.get(h.scope)
            if cur is not None and cur.version == h.version and cur.digest != h.digest:
                raise MpcError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"heads: two different admin-signed policies of version {h.version} for scope {h.describe()}; nothing attested",
                )
            if cur is None or h.version > cur.version:
                best[h.scope] = h
        if DEFAULT_SCOPE not in best:
            raise MpcError(grpc.StatusCode.UNAVAILABLE, "heads: could not learn the default policy from the coordinator or any node")
        when = time.time_ns() // 1_000_000 if issued_at_ms is None else issued_at_ms
        att = PolicyAttestation.build(self.admin_set.digest(), when, me.name, list(best.values()))
        signed_att = sign_attestation(att, me.signing_key)
        out.update(self.send_attestation(signed_att))
        return out

    def send_attestation(self, signed: SignedPolicyAttestation) -> dict[str, str]:
        """Send a signed attestation to the coordinator and every known node; outcomes by name:
        the coordinator ``stored`` / ``holds a newer one`` / ``error: ...``; a node its status,
        ``holds a newer one (...)``, :data:`RELAYED` when this host cannot reach it (UNAVAILABLE,
        DEADLINE_EXCEEDED) but the coordinator stored the attestation (it relays it; a node
        denied it refuses to sign once its attestation is older than ``policy_max_age_s``), or
        ``error: CODE: ...`` (a node that refuses it, or unreachable while the coordinator did not
        store it)."""
        data = signed.to_bytes()
        out: dict[str, str] = {}
        try:
            r = self._call(self._stub.SubmitPolicyAttestation, coordinator_pb2.SubmitPolicyAttestationRequest(attestation=data))
            out["coordinator"] = "stored" if r.stored else "holds a newer one"
        except MpcError as e:
            out["coordinator"] = f"error: {e.code.name}: {e.message}"
        for name in sorted(self.node_endpoints):
            try:
                resp = self._node_stub(name).InstallPolicyAttestation(
                    node_pb2.InstallPolicyAttestationRequest(attestation=data), timeout=10
                )
                same = resp.stored or resp.held_issued_at_ms == signed.issued_at_ms  # e.g. relayed by the coordinator first
                out[name] = resp.status if same else f"holds a newer one ({resp.status})"
            except grpc.RpcError as e:
                # a node this host cannot reach (production networks let only the coordinator in) gets it
                # relayed by the coordinator; were it withheld, the node refuses to sign (policy_max_age_s)
                relayed = e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and out["coordinator"] == "stored"
                out[name] = RELAYED if relayed else f"error: {e.code().name}: {e.details() or ''}"
        return out

    # --- audit -------------------------------------------------------------------------------
    def audit_page(self, component: str, after_seq: int = 0, limit: int = 0) -> governance_pb2.AuditPage:
        req = coordinator_pb2.GetAuditLogRequest(component=component, after_seq=after_seq, limit=limit)
        return self._call(self._stub.GetAuditLog, req)

    def fetch_audit(self, component: str) -> AuditLogCopy:
        """Every entry of ``component``'s log, page by page (not verified: see mpcnet.client.audit)."""
        out = AuditLogCopy(component)
        after = 0
        while True:
            page = self.audit_page(component, after)
            if not out.entries:
                out.head_seq = page.head_seq
            out.entries.extend(page.entries)
            if not page.entries or (len(out.entries) >= page.head_seq and page.entries[-1].seq >= page.head_seq):
                return out
            if page.entries[-1].seq <= after:  # not advancing (a misbehaving relay): verify what we have
                return out
            after = page.entries[-1].seq


def error_of(r: SignRequest) -> MpcError:
    """The request's failure as an :class:`MpcError` (its recorded gRPC code, or ABORTED)."""
    code = grpc.StatusCode.ABORTED
    if r.error_code:
        code = next((c for c in grpc.StatusCode if c.name == r.error_code), grpc.StatusCode.UNKNOWN)
    elif r.state == "expired":
        code = grpc.StatusCode.DEADLINE_EXCEEDED
    return MpcError(code, f"request {r.request_id} is {r.state.upper()}: {r.error_message}")


class SigningTeam:
    """A requester and enough approvers acting together: tests, benchmarks and demos that need
    signatures without a human in the loop. Each decision is still signed with each approver's
    own key, and every node still checks the quorum."""

    def __init__(self, requester: MpcClient, approvers: Sequence[MpcClient]) -> None:
        self.requester = requester
        self.approvers = list(approvers)
        self.decide_wait_ms = TEAM_DECIDE_WAIT_MS  # the deciding approval's wait_done_ms (0: answer SIGNING, then watch)
        self._watched_lock = threading.Lock()
        self._watched = 0  # see watched

    @property
    def watched(self) -> int:
        """How many :meth:`request` calls had to watch for the end (the deciding approval's answer
        was not final: the wait was off, too short, or the coordinator's waiting slots were taken)."""
        return self._watched

    @staticmethod
    def from_cluster(
        directory: str | Path, *, requester: str = "requester1", approvers: Sequence[str] = ("approver1", "approver2"),
        timeout: float = 300.0,
    ) -> SigningTeam:
        return SigningTeam(
            MpcClient.from_cluster(directory, identity=requester, timeout=timeout),
            [MpcClient.from_cluster(directory, identity=a, timeout=timeout) for a in approvers],
        )

    def close(self) -> None:
        for c in (self.requester, *self.approvers):
            c.close()

    def __enter__(self) -> SigningTeam:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, key_id: bytes | str, digest: bytes = b"", *, path: str | Sequence[int] | None = None, description: str = "",
        request_id: str = "", ttl_seconds: int = 0, message: bytes = b"", taproot_merkle_root: bytes = b"",
    ) -> SignRequest:
        """Submit, approve with every approver until the request leaves PENDING_APPROVAL, and
        wait for the end; returns the final request (DONE or not). Each approver signs the
        request the requester submitted and checked (``approve(seen=...)``: no fetch of it
        again, survey R13), so a signature costs the submit, one decision per approver and the
        wait; the deciding approval asks the coordinator to answer with the end of the signing
        (``wait_done_ms`` = :attr:`decide_wait_ms`, by default :data:`TEAM_DECIDE_WAIT_MS`), so a signing that ends by then (a pool
        presignature: one round) needs no watch."""
        submitted = self.requester.submit_sign_request(
            key_id, digest, path=path, description=description or "automated signing request", request_id=request_id,
            ttl_seconds=ttl_seconds, message=message, taproot_merkle_root=taproot_merkle_root,
        )
        r = submitted
        for a in self.approvers:
            if r.state != "pending_approval":
                break
            r = a.approve(r.request_id, seen=submitted, wait_done_ms=self.decide_wait_ms)
        if r.state in TERMINAL_STATES:
            return r
        with self._watched_lock:
            self._watched += 1
        return self.requester.wait_sign_request(r.request_id, timeout=self.requester.timeout)

    def sign(
        self, key_id: bytes | str, digest: bytes, *, path: str | Sequence[int] | None = None, description: str = "",
        request_id: str = "",
    ) -> SignatureResult:
        """:meth:`request`, then the signature; :class:`MpcError` if the request did not end DONE."""
        r = self.request(key_id, digest, path=path, description=description, request_id=request_id)
        if r.state != "done" or r.signature is None:
            raise error_of(r)
        if not isinstance(r.signature, SignatureResult):
            raise MpcError(grpc.StatusCode.FAILED_PRECONDITION, f"key_id: is a {r.request.scheme} key (use sign_schnorr)")
        return r.signature

    def sign_schnorr(
        self, key_id: bytes | str, *, message: bytes = b"", digest: bytes = b"", taproot_merkle_root: bytes = b"",
        description: str = "", request_id: str = "",
    ) -> SchnorrSignature:
        """Issue 16: :meth:`request` for a Schnorr key (ed25519: ``message``; bip340: the 32-byte
        ``digest`` and optional ``taproot_merkle_root``), then its signature, verified by
        independent libraries over what it signs before it is returned (:mod:`mpcnet.client.schnorr`);
        :class:`MpcError` if the request did not end DONE or the key is an ECDSA key."""
        r = self.request(
            key_id, digest, description=description, request_id=request_id, message=message, taproot_merkle_root=taproot_merkle_root,
        )
        if r.state != "done" or r.signature is None:
            raise error_of(r)
        if not isinstance(r.signature, SchnorrSignature):
            raise MpcError(grpc.StatusCode.FAILED_PRECONDITION, "key_id: is an ecdsa-secp256k1 key (use sign)")
        return r.signature
