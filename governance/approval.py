"""Signing requests, approver decisions, and the quorum rule every node re-checks.

A :class:`SigningRequest` names everything a signature will commit to (key, digest, derivation
path) plus who asked, why, when it expires and under which policy (its version *and* its
digest, so a request made under one policy never counts under another policy that happens to
carry the same version number, e.g. a key's own policy v1 and the default policy v1). Approvers
sign an :class:`Approval` (APPROVE or REJECT) over the request's canonical encoding, so an
approval of one request says nothing about any other request id, digest, key, path, expiry or
policy.

**Quorum rule.** With ``k`` approvers and quorum ``m``, a set of distinct, valid decisions is

* ``"approved"`` when at least ``m`` approvers approved;
* ``"rejected"`` when the rejections leave the quorum unreachable (``k - rejects < m``);
* ``"pending"`` otherwise.

The first two cannot both hold (they would need more than ``k`` distinct approvers), so the
state does not depend on the order decisions arrived in. A single REJECT is therefore *not* a
veto: it matters only once enough approvers rejected that ``m`` approvals are impossible. This
is deliberate: nodes only see the decisions the (untrusted) coordinator forwards, and a veto
rule could be bypassed by silently dropping the REJECT; under this rule no subset of valid
decisions can be ``"approved"`` unless the full set is too.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._checks import (
    MAX_MEMBERS,
    SIGNATURE_LEN,
    check_bytes,
    check_int,
    check_name,
    check_private_key,
    ed25519_verify,
    expect_dict,
    from_hex,
    json_int,
)
from .encoding import Decoder, Encoder, domain_tag, encoded_once, sha256
from .errors import GovernanceError, field_prefix
from .policy import MAX_VERSION, KeyPolicy, RateLimit
from .text import check_request_id, check_text

SIGNING_REQUEST_TAG = domain_tag("signing-request")
# issue 16: a request for a Schnorr key (FROST) appends its scheme and Taproot root under this tag;
# an ECDSA request keeps the v1 tag and encodes byte for byte as before
SIGNING_REQUEST_V2_TAG = domain_tag("signing-request-v2")
SCHEME_ECDSA = "ecdsa-secp256k1"
SCHEME_ED25519 = "ed25519"
SCHEME_BIP340 = "schnorr-secp256k1-bip340"
SCHEMES = (SCHEME_ECDSA, SCHEME_ED25519, SCHEME_BIP340)
MAX_MESSAGE = 65536  # bytes of an ed25519 request's message (PureEdDSA); the request carries its SHA-256
APPROVAL_TAG = domain_tag("approval")
APPROVAL_BUNDLE_TAG = domain_tag("approval-bundle")

KEY_ID_LEN = 32
DIGEST_LEN = 32
MAX_DESCRIPTION = 1024  # characters
MAX_PATH_DEPTH = 255
MAX_PATH_INDEX = 2**32 - 1
MAX_TIME_MS = 2**63 - 1
MAX_CLOCK_SKEW_MS = 5 * 60 * 1000  # a request may be created this far in the verifier's future
MAX_CLOCK_TOLERANCE_MS = 5 * 60 * 1000  # the largest configurable tolerance for the verifier's clock

TallyState = Literal["pending", "approved", "rejected"]


class Decision(enum.Enum):
    """An approver's decision on one request."""

    APPROVE = "approve"
    REJECT = "reject"


_DECISION_CODE = {Decision.APPROVE: 1, Decision.REJECT: 2}
_CODE_DECISION = {code: d for d, code in _DECISION_CODE.items()}


@dataclass(frozen=True)
class SigningRequest:
    """What a requester asks to have signed, and under which policy version.

    Construction checks each field's shape; :func:`verify_approvals` checks it against a policy
    and the clock. ``description`` is shown to approvers: at most 1024 characters of
    :func:`governance.text.check_text` (no control, format or separator character, newline and
    tab included, so it cannot forge a row of a reviewer's screen or hide text from it).
    """

    request_id: str  # 1..64 of [A-Za-z0-9._-] (governance.text.REQUEST_ID_RE)
    key_id: bytes  # 32
    digest: bytes  # 32, the message hash to be signed
    derivation_path: tuple[int, ...]  # BIP32 indices, at most 255 deep
    requester: str
    description: str
    created_at_ms: int
    expires_at_ms: int  # > created_at_ms
    policy_version: int
    policy_digest: bytes  # 32, KeyPolicy.digest() of the policy the request is made under
    # issue 16: the key's signature scheme (SCHEMES). What ``digest`` means depends on it:
    # ecdsa-secp256k1 the 32-byte hash signed; schnorr-secp256k1-bip340 the 32-byte message signed
    # (e.g. a Taproot sighash); ed25519 the SHA-256 of the message signed (the message travels next
    # to the request and nodes check it). A Schnorr key has no derivation path.
    scheme: str = SCHEME_ECDSA
    # schnorr-secp256k1-bip340 only: b"" (BIP86 key-path tweak, no script tree) or the 32-byte
    # Taproot Merkle root the output key commits to
    taproot_root: bytes = b""

    def __post_init__(self) -> None:
        check_request_id(self.request_id)
        object.__setattr__(self, "key_id", check_bytes(self.key_id, "key_id", length=KEY_ID_LEN))
        object.__setattr__(self, "digest", check_bytes(self.digest, "digest", length=DIGEST_LEN))
        path = self.derivation_path
        if not isinstance(path, (tuple, list)) or len(path) > MAX_PATH_DEPTH:
            raise GovernanceError("derivation_path", f"must be a tuple of at most {MAX_PATH_DEPTH} indices")
        for i, index in enumerate(path):
            check_int(index, f"derivation_path[{i}]", 0, MAX_PATH_INDEX)
        object.__setattr__(self, "derivation_path", tuple(path))
        check_name(self.requester, "requester")
        check_text(self.description, "description", MAX_DESCRIPTION)
        check_int(self.created_at_ms, "created_at_ms", 0, MAX_TIME_MS - 1)
        check_int(self.expires_at_ms, "expires_at_ms", self.created_at_ms + 1, MAX_TIME_MS)
        check_int(self.policy_version, "policy_version", 1, MAX_VERSION)
        object.__setattr__(self, "policy_digest", check_bytes(self.policy_digest, "policy_digest", length=DIGEST_LEN))
        if not isinstance(self.scheme, str) or self.scheme not in SCHEMES:
            raise GovernanceError("scheme", f"must be one of {', '.join(SCHEMES)}")
        root = self.taproot_root
        if not isinstance(root, (bytes, bytearray)):
            raise GovernanceError("taproot_root", "must be bytes")
        root = bytes(root)
        if root and (self.scheme != SCHEME_BIP340 or len(root) != DIGEST_LEN):
            raise GovernanceError("taproot_root", f"only for {SCHEME_BIP340} keys, and then empty or {DIGEST_LEN} bytes")
        object.__setattr__(self, "taproot_root", root)
        if self.scheme != SCHEME_ECDSA and self.derivation_path:
            raise GovernanceError("derivation_path", f"a {self.scheme} key has no derivation path: must be empty")

    def encode(self) -> bytes:
        """The canonical encoding every approval signs (v1 for ECDSA, v2 for a Schnorr key).

        Computed once per instance, as :meth:`KeyPolicy.encode` (every field is immutable and
        checked at construction; a node decodes, checks and hashes one request up to five times
        per signature)."""
        return encoded_once(self, self._encode)

    def _encode(self) -> bytes:
        v2 = self.scheme != SCHEME_ECDSA
        enc = Encoder(SIGNING_REQUEST_V2_TAG if v2 else SIGNING_REQUEST_TAG)
        enc.text(self.request_id).raw(self.key_id).raw(self.digest)
        enc.count(len(self.derivation_path))
        for index in self.derivation_path:
            enc.uint(index)
        enc.text(self.requester).text(self.description)
        enc.uint(self.created_at_ms).uint(self.expires_at_ms).uint(self.policy_version).raw(self.policy_digest)
        if v2:
            enc.text(self.scheme).raw(self.taproot_root)
        return enc.finish()

    def request_digest(self) -> bytes:
        """SHA-256 of :meth:`encode`: a short, unique handle for this exact request."""
        return sha256(self.encode())

    def to_bytes(self) -> bytes:
        return self.encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SigningRequest:
        v2 = _has_tag(data, SIGNING_REQUEST_V2_TAG)
        dec = Decoder(data, SIGNING_REQUEST_V2_TAG if v2 else SIGNING_REQUEST_TAG)
        request_id = dec.text("request_id")
        key_id = dec.raw("key_id", length=KEY_ID_LEN)
        digest = dec.raw("digest", length=DIGEST_LEN)
        depth = dec.count("derivation_path", max_count=MAX_PATH_DEPTH)
        path = tuple(dec.uint(f"derivation_path[{i}]") for i in range(depth))
        requester = dec.text("requester")
        description = dec.text("description")
        created_at_ms = dec.uint("created_at_ms")
        expires_at_ms = dec.uint("expires_at_ms")
        policy_version = dec.uint("policy_version")
        policy_digest = dec.raw("policy_digest", length=DIGEST_LEN)
        scheme, root = SCHEME_ECDSA, b""
        if v2:
            scheme = dec.text("scheme")
            root = dec.raw("taproot_root")
            if scheme == SCHEME_ECDSA:
                raise GovernanceError("scheme", "an ecdsa-secp256k1 request is encoded with the v1 tag")
        dec.finish()
        out = cls(
            request_id, key_id, digest, path, requester, description, created_at_ms, expires_at_ms, policy_version,
            policy_digest, scheme, root,
        )
        if out.encode() != bytes(data):
            raise GovernanceError("encoding", "not the canonical encoding")
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "request_id": self.request_id,
            "key_id": self.key_id.hex(),
            "digest": self.digest.hex(),
            "derivation_path": list(self.derivation_path),
            "requester": self.requester,
            "description": self.description,
            "created_at_ms": self.created_at_ms,
            "expires_at_ms": self.expires_at_ms,
            "policy_version": self.policy_version,
            "policy_digest": self.policy_digest.hex(),
        } | ({"scheme": self.scheme, "taproot_root": self.taproot_root.hex()} if self.scheme != SCHEME_ECDSA else {})

    @classmethod
    def from_dict(cls, data: object) -> SigningRequest:
        keys = frozenset(cls.__dataclass_fields__)
        if isinstance(data, dict) and "scheme" not in data:
            keys -= {"scheme", "taproot_root"}  # an ECDSA request's dict, as before issue 16
        d = expect_dict(data, "", keys)
        path = d["derivation_path"]
        if not isinstance(path, list):
            raise GovernanceError("derivation_path", "must be a list of indices")
        request_id, requester, description = d["request_id"], d["requester"], d["description"]
        if not isinstance(request_id, str):
            raise GovernanceError("request_id", "must be a string")
        if not isinstance(requester, str):
            raise GovernanceError("requester", "must be a string")
        if not isinstance(description, str):
            raise GovernanceError("description", "must be a string")
        return cls(
            request_id=request_id,
            key_id=from_hex(d["key_id"], "key_id", length=KEY_ID_LEN),
            digest=from_hex(d["digest"], "digest", length=DIGEST_LEN),
            derivation_path=tuple(json_int(v, f"derivation_path[{i}]") for i, v in enumerate(path)),
            requester=requester,
            description=description,
            created_at_ms=json_int(d["created_at_ms"], "created_at_ms"),
            expires_at_ms=json_int(d["expires_at_ms"], "expires_at_ms"),
            policy_version=json_int(d["policy_version"], "policy_version"),
            policy_digest=from_hex(d["policy_digest"], "policy_digest", length=DIGEST_LEN),
            scheme=_scheme(d),
            taproot_root=_taproot_root(d),
        )


def _has_tag(data: object, tag: str) -> bool:
    """Whether ``data`` starts with the encoding of ``tag`` (the Decoder then checks it whole)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return False
    head = Encoder(tag).finish()
    return bytes(data[: len(head)]) == head


def _scheme(d: Mapping[str, object]) -> str:
    scheme = d.get("scheme", SCHEME_ECDSA)
    if not isinstance(scheme, str):
        raise GovernanceError("scheme", "must be a string")
    return scheme


def _taproot_root(d: Mapping[str, object]) -> bytes:
    root = d.get("taproot_root", "")
    if not isinstance(root, str):
        raise GovernanceError("taproot_root", "must be a hex string")
    return from_hex(root, "taproot_root", length=DIGEST_LEN) if root else b""


def _approval_message(request_encoding: bytes, approver: str, decision: Decision) -> bytes:
    return (
        Encoder(APPROVAL_TAG)
        .text(approver)
        .uint(_DECISION_CODE[decision])
        .raw(request_encoding)
        .finish()
    )


@dataclass(frozen=True)
class Approval:
    """``approver``'s signed decision on one request.

    The signature covers the domain tag, the approver's name, the decision and the request's
    canonical encoding.
    """

    approver: str
    decision: Decision
    signature: bytes

    def __post_init__(self) -> None:
        check_name(self.approver, "approver")
        if not isinstance(self.decision, Decision):
            raise GovernanceError("decision", "must be a Decision")
        object.__setattr__(self, "signature", check_bytes(self.signature, "signature", length=SIGNATURE_LEN))


def sign_approval(
    request: SigningRequest, approver_name: str, private_key: Ed25519PrivateKey, decision: Decision
) -> Approval:
    """``approver_name``'s signed ``decision`` on ``request``."""
    if not isinstance(request, SigningRequest):
        raise GovernanceError("request", "must be a SigningRequest")
    check_name(approver_name, "approver_name")
    if not isinstance(decision, Decision):
        raise GovernanceError("decision", "must be a Decision")
    key = check_private_key(private_key, "private_key")
    return Approval(approver_name, decision, key.sign(_approval_message(request.encode(), approver_name, decision)))


@dataclass(frozen=True)
class Tally:
    """Who approved and who rejected (valid, distinct decisions only), and the resulting state."""

    approved: frozenset[str]
    rejected: frozenset[str]
    state: TallyState


@dataclass(frozen=True)
class QuorumResult:
    """A request that reached its approval quorum, as :func:`verify_approvals` established."""

    request_id: str
    request_digest: bytes
    policy_version: int
    approved: frozenset[str]
    rejected: frozenset[str]


def _check_types(policy: object, request: object) -> None:
    if not isinstance(policy, KeyPolicy):
        raise GovernanceError("policy", "must be a KeyPolicy")
    if not isinstance(request, SigningRequest):
        raise GovernanceError("request", "must be a SigningRequest")


def _check_request_static(policy: KeyPolicy, request: SigningRequest) -> None:
    if request.policy_version != policy.version:
        raise GovernanceError(
            "policy_version", f"request is for policy version {request.policy_version}, current is {policy.version}"
        )
    if not hmac.compare_digest(request.policy_digest, policy.digest()):
        raise GovernanceError(
            "policy_digest", f"request was made under another policy than the current version {policy.version}"
        )
    if request.expires_at_ms - request.created_at_ms > policy.ttl_seconds * 1000:
        raise GovernanceError("expires_at_ms", f"request lives longer than the policy's TTL of {policy.ttl_seconds} s")
    if request.requester not in policy.requesters:
        raise GovernanceError(
            "requester", f"{request.requester!r} may not request signatures with this key", subject=request.requester
        )


def check_request(policy: KeyPolicy, request: SigningRequest, *, now_ms: int, tolerance_ms: int = 0) -> None:
    """Raise :class:`GovernanceError` unless ``request`` is acceptable under ``policy`` at ``now_ms``.

    Checks the policy version and digest, that the request's lifetime is within the policy's TTL, that the
    requester is allowed, that it is not created more than :data:`MAX_CLOCK_SKEW_MS` plus
    ``tolerance_ms`` in the future, and that it has not expired (``now_ms > expires_at_ms +
    tolerance_ms``). ``tolerance_ms`` (0..:data:`MAX_CLOCK_TOLERANCE_MS`) is the verifier's
    allowance for its own clock being off from the clock that stamped the request.
    """
    _check_types(policy, request)
    check_int(now_ms, "now_ms", 0, MAX_TIME_MS)
    check_int(tolerance_ms, "tolerance_ms", 0, MAX_CLOCK_TOLERANCE_MS)
    _check_request_static(policy, request)
    if request.created_at_ms > now_ms + MAX_CLOCK_SKEW_MS + tolerance_ms:
        raise GovernanceError("created_at_ms", "request is not valid yet (created in the future)")
    if now_ms > request.expires_at_ms + tolerance_ms:
        raise GovernanceError("expires_at_ms", "request has expired")


def _check_one(policy: KeyPolicy, request_encoding: bytes | None, approval: object, field: str) -> Approval:
    """``approval`` by an approver of ``policy``; its signature over the request is verified
    unless ``request_encoding`` is None (:func:`tally_verified`)."""
    if not isinstance(approval, Approval):
        raise GovernanceError(field, "must be an Approval")
    key = policy.approvers.get(approval.approver)
    if key is None:
        raise GovernanceError(
            f"{field}.approver", f"{approval.approver!r} is not an approver of this policy", subject=approval.approver
        )
    if request_encoding is None:
        return approval
    message = _approval_message(request_encoding, approval.approver, approval.decision)
    if not ed25519_verify(key, approval.signature, message):
        raise GovernanceError(
            f"{field}.signature",
            f"signature by approver {approval.approver!r} does not verify over this request",
            subject=approval.approver,
        )
    return approval


def check_approval(policy: KeyPolicy, request: SigningRequest, approval: Approval) -> None:
    """Raise :class:`GovernanceError` unless ``approval`` is a valid decision by an approver of ``policy``.

    For the coordinator to vet each decision as it arrives (before storing it).
    """
    _check_types(policy, request)
    _check_one(policy, request.encode(), approval, "approval")


def tally(policy: KeyPolicy, request: SigningRequest, approvals: Sequence[Approval]) -> Tally:
    """Count ``approvals`` under the quorum rule (see the module docstring).

    Raises :class:`GovernanceError` if the request does not fit the policy (version, TTL,
    requester) or any approval is by an unknown approver, has a bad signature, or repeats an
    approver (a repeat is refused, never counted twice). The clock is not consulted.
    """
    return _tally(policy, request, approvals, verify=True)


def tally_verified(policy: KeyPolicy, request: SigningRequest, approvals: Sequence[Approval]) -> Tally:
    """:func:`tally` for approvals whose signatures THIS process already checked under
    ``policy`` and ``request`` with :func:`check_approval` (the coordinator's live decision
    path: each decision is vetted as it arrives, and the tally runs again at every decision).

    Checks everything :func:`tally` checks (types, the request against the policy, each
    approver a member of the policy, no approver twice) except the Ed25519 signatures, so it
    costs no signature verification; same result and same :class:`GovernanceError` (by field)
    as :func:`tally` on such input. Never use it on approvals read back from storage or the
    wire after a restart: :func:`tally` re-verifies those (the coordinator's recovery)."""
    return _tally(policy, request, approvals, verify=False)


def _tally(policy: KeyPolicy, request: SigningRequest, approvals: Sequence[Approval], *, verify: bool) -> Tally:
    _check_types(policy, request)
    _check_request_static(policy, request)
    if isinstance(approvals, (str, bytes)) or not isinstance(approvals, Sequence):
        raise GovernanceError("approvals", "must be a sequence of Approval")
    if len(approvals) > MAX_MEMBERS:
        raise GovernanceError("approvals", f"more than {MAX_MEMBERS} approvals")
    encoding = request.encode() if verify else None
    seen: dict[str, int] = {}
    approved: set[str] = set()
    rejected: set[str] = set()
    for i, item in enumerate(approvals):
        field = f"approvals[{i}]"
        approval = _check_one(policy, encoding, item, field)
        if approval.approver in seen:
            raise GovernanceError(
                f"{field}.approver",
                f"{approval.approver!r} already decided in approvals[{seen[approval.approver]}]",
                subject=approval.approver,
            )
        seen[approval.approver] = i
        (approved if approval.decision is Decision.APPROVE else rejected).add(approval.approver)
    k, m = len(policy.approvers), policy.approval_quorum
    state: TallyState
    if len(approved) >= m:
        state = "approved"
    elif k - len(rejected) < m:
        state = "rejected"
    else:
        state = "pending"
    return Tally(frozenset(approved), frozenset(rejected), state)


def verify_approvals(
    policy: KeyPolicy, request: SigningRequest, approvals: Sequence[Approval], *, now_ms: int, tolerance_ms: int = 0
) -> QuorumResult:
    """What a node checks before contributing to a signature: :class:`GovernanceError` unless approved.

    :func:`check_request` at ``now_ms`` (with ``tolerance_ms``), then :func:`tally`, which must say ``"approved"``.
    """
    check_request(policy, request, now_ms=now_ms, tolerance_ms=tolerance_ms)
    result = tally(policy, request, approvals)
    if result.state == "rejected":
        raise GovernanceError(
            "approvals",
            f"rejected by {', '.join(sorted(result.rejected))}: {policy.approval_quorum} approvals are no longer possible",
        )
    if result.state != "approved":
        raise GovernanceError(
            "approvals", f"{len(result.approved)} valid approval(s), {policy.approval_quorum} required"
        )
    return QuorumResult(
        request_id=request.request_id,
        request_digest=request.request_digest(),
        policy_version=policy.version,
        approved=result.approved,
        rejected=result.rejected,
    )


@dataclass(frozen=True)
class ApprovalBundle:
    """A request with the decisions collected for it: what the coordinator sends to each node."""

    request: SigningRequest
    approvals: tuple[Approval, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.request, SigningRequest):
            raise GovernanceError("request", "must be a SigningRequest")
        if not isinstance(self.approvals, (tuple, list)) or len(self.approvals) > MAX_MEMBERS:
            raise GovernanceError("approvals", f"must be a sequence of at most {MAX_MEMBERS} Approval")
        for i, a in enumerate(self.approvals):
            if not isinstance(a, Approval):
                raise GovernanceError(f"approvals[{i}]", "must be an Approval")
        object.__setattr__(self, "approvals", tuple(self.approvals))

    def to_bytes(self) -> bytes:
        """The canonical encoding (computed once per instance, as :meth:`SigningRequest.encode`)."""
        return encoded_once(self, self._encode)

    def _encode(self) -> bytes:
        enc = Encoder(APPROVAL_BUNDLE_TAG).raw(self.request.encode()).count(len(self.approvals))
        for a in self.approvals:
            enc.text(a.approver).uint(_DECISION_CODE[a.decision]).raw(a.signature)
        return enc.finish()

    @classmethod
    def from_bytes(cls, data: bytes) -> ApprovalBundle:
        dec = Decoder(data, APPROVAL_BUNDLE_TAG)
        request_bytes = dec.raw("request")
        approvals: list[Approval] = []
        for i in range(dec.count("approvals", max_count=MAX_MEMBERS)):
            field = f"approvals[{i}]"
            approver = dec.text(f"{field}.approver")
            code = dec.uint(f"{field}.decision")
            if code not in _CODE_DECISION:
                raise GovernanceError(f"{field}.decision", f"unknown decision code {code}")
            signature = dec.raw(f"{field}.signature", length=SIGNATURE_LEN)
            with field_prefix(field):
                approvals.append(Approval(approver, _CODE_DECISION[code], signature))
        dec.finish()
        with field_prefix("request"):
            request = SigningRequest.from_bytes(request_bytes)
        out = cls(request, tuple(approvals))
        if out.to_bytes() != bytes(data):
            raise GovernanceError("encoding", "not the canonical encoding")
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "request": self.request.to_dict(),
            "approvals": [
                {"approver": a.approver, "decision": a.decision.value, "signature": a.signature.hex()}
                for a in self.approvals
            ],
        }

    @classmethod
    def from_dict(cls, data: object) -> ApprovalBundle:
        d = expect_dict(data, "", frozenset({"request", "approvals"}))
        with field_prefix("request"):
            request = SigningRequest.from_dict(d["request"])
        items = d["approvals"]
        if not isinstance(items, list) or len(items) > MAX_MEMBERS:
            raise GovernanceError("approvals", f"must be a list of at most {MAX_MEMBERS} objects")
        approvals: list[Approval] = []
        for i, item in enumerate(items):
            field = f"approvals[{i}]"
            a = expect_dict(item, field, frozenset({"approver", "decision", "signature"}))
            decision = a["decision"]
            if decision not in ("approve", "reject"):
                raise GovernanceError(f"{field}.decision", "must be 'approve' or 'reject'")
            with field_prefix(field):
                approver = check_name(a["approver"], "approver")
                signature = from_hex(a["signature"], "signature", length=SIGNATURE_LEN)
                approvals.append(Approval(approver, Decision(decision), signature))
        return cls(request, tuple(approvals))

    def verify(self, policy: KeyPolicy, *, now_ms: int, tolerance_ms: int = 0) -> QuorumResult:
        """Shorthand for :func:`verify_approvals` on this bundle."""
        return verify_approvals(policy, self.request, self.approvals, now_ms=now_ms, tolerance_ms=tolerance_ms)


def rate_limit_ok(limit: RateLimit, recent_signature_times_ms: Sequence[int], now_ms: int) -> bool:
    """True iff one more signature at ``now_ms`` keeps within ``limit``.

    Counts the earlier signatures with ``time > now_ms - window`` (later-than-now times count
    too, so a clock step backwards cannot reset the window); allowed iff fewer than
    ``max_signatures``. The caller must make check-and-record atomic (see
    :meth:`mpcnet.common.stores.audit.AuditLog.append_rate_limited`).
    """
    if not isinstance(limit, RateLimit):
        raise GovernanceError("limit", "must be a RateLimit")
    check_int(now_ms, "now_ms", 0, MAX_TIME_MS)
    if isinstance(recent_signature_times_ms, (str, bytes)) or not isinstance(recent_signature_times_ms, Sequence):
        raise GovernanceError("recent_signature_times_ms", "must be a sequence of ints")
    start = now_ms - limit.window_seconds * 1000
    count = 0
    for i, t in enumerate(recent_signature_times_ms):
        check_int(t, f"recent_signature_times_ms[{i}]", 0, MAX_TIME_MS)
        if t > start:
            count += 1
    return count < limit.max_signatures
