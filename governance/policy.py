"""Governance root (admin set), per-key signing policies, and admin-signed policy changes.

Every node is given the same :class:`AdminSet` at cluster creation: the admins, their quorum and
a random 32-byte ``cluster_id``, so that two clusters never share a governance root even when the
same people administer both. A :class:`KeyPolicy` (who may
request, who approves, how many approvals, how long a request lives, how many signatures per
window) applies to one key (``scope`` = its 32-byte key id) or to every key without its own
policy (``scope`` = :data:`DEFAULT_SCOPE`). A policy only changes through a :class:`PolicyChange`
signed by at least ``quorum`` distinct admins; :func:`verify_policy_change` also checks that the
change names the governance root it was made for (:meth:`AdminSet.digest`, which covers the
cluster id, every admin key and the quorum), so a change signed for one cluster cannot be
replayed to another, and that it names the digest of the policy it replaces and bumps the
version by one, so an old change cannot be replayed and two changes cannot fork a scope's
history.

The caller looks up ``current`` by ``change.scope`` and stores the result under the same scope.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._checks import (
    MAX_MEMBERS,
    SIGNATURE_LEN,
    check_bytes,
    check_int,
    check_members,
    check_name,
    check_name_set,
    check_private_key,
    ed25519_verify,
    expect_dict,
    from_hex,
    join,
    json_int,
    members_from_dict,
    members_to_dict,
)
from .encoding import Decoder, Encoder, domain_tag, encoded_once, sha256
from .errors import GovernanceError, field_prefix

ADMIN_SET_TAG = domain_tag("admin-set")
KEY_POLICY_TAG = domain_tag("key-policy")
POLICY_CHANGE_TAG = domain_tag("policy-change")
SIGNED_POLICY_CHANGE_TAG = domain_tag("signed-policy-change")

DEFAULT_SCOPE = b"default"
KEY_ID_LEN = 32
DIGEST_LEN = 32
CLUSTER_ID_LEN = 32
MAX_VERSION = 2**63 - 1
MAX_TTL_SECONDS = 30 * 86400
MIN_REFRESH_PERIOD_S = 60
MAX_REFRESH_PERIOD_S = 366 * 86400
MAX_WINDOW_SECONDS = 366 * 86400
MAX_SIGNATURES_PER_WINDOW = 1_000_000


def _decode_members(dec: Decoder, field: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    previous: str | None = None
    for i in range(dec.count(field, max_count=MAX_MEMBERS)):
        name = dec.text(f"{field}[{i}].name")
        if previous is not None and not name > previous:
            raise GovernanceError(f"{field}[{i}].name", "not in canonical (sorted, unique) order")
        previous = name
        out[name] = dec.raw(f"{field}[{i}].key")
    return out


def _encode_members(enc: Encoder, members: Mapping[str, bytes]) -> None:
    enc.count(len(members))
    for name, key in members.items():  # already sorted by check_members
        enc.text(name).raw(key)


def check_canonical(obj_bytes: bytes, data: bytes | bytearray | memoryview) -> None:
    """GovernanceError naming ``encoding`` unless ``data`` re-encodes to exactly ``obj_bytes``."""
    if obj_bytes != bytes(data):
        raise GovernanceError("encoding", "not the canonical encoding")


# --- admin set -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdminSet:
    """The governance root of one cluster: admins (name -> raw Ed25519 public key), how many
    must sign, and the cluster's random 32-byte id."""

    admins: Mapping[str, bytes]
    quorum: int
    cluster_id: bytes

    def __post_init__(self) -> None:
        admins = check_members(self.admins, "admins", what="admin")
        object.__setattr__(self, "admins", admins)
        check_int(self.quorum, "quorum", 1, len(admins))
        object.__setattr__(self, "cluster_id", check_bytes(self.cluster_id, "cluster_id", length=CLUSTER_ID_LEN))

    def __hash__(self) -> int:
        return hash(self.encode())

    def encode(self) -> bytes:
        enc = Encoder(ADMIN_SET_TAG).raw(self.cluster_id)
        _encode_members(enc, self.admins)
        return enc.uint(self.quorum).finish()

    def digest(self) -> bytes:
        """SHA-256 of the canonical encoding: the governance root every :class:`PolicyChange` names."""
        return sha256(self.encode())

    def to_bytes(self) -> bytes:
        return self.encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> AdminSet:
        dec = Decoder(data, ADMIN_SET_TAG)
        cluster_id = dec.raw("cluster_id", length=CLUSTER_ID_LEN)
        admins = _decode_members(dec, "admins")
        quorum = dec.uint("quorum")
        dec.finish()
        out = cls(admins, quorum, cluster_id)
        check_canonical(out.encode(), data)
        return out

    def to_dict(self) -> dict[str, object]:
        return {"cluster_id": self.cluster_id.hex(), "admins": members_to_dict(self.admins), "quorum": self.quorum}

    @classmethod
    def from_dict(cls, data: object) -> AdminSet:
        d = expect_dict(data, "", frozenset({"cluster_id", "admins", "quorum"}))
        return cls(
            members_from_dict(d["admins"], "admins"),
            json_int(d["quorum"], "quorum"),
            from_hex(d["cluster_id"], "cluster_id", length=CLUSTER_ID_LEN),
        )


# --- key policy ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    """At most ``max_signatures`` signatures in any sliding window of ``window_seconds``."""

    max_signatures: int
    window_seconds: int

    def __post_init__(self) -> None:
        check_int(self.max_signatures, "max_signatures", 1, MAX_SIGNATURES_PER_WINDOW)
        check_int(self.window_seconds, "window_seconds", 1, MAX_WINDOW_SECONDS)

    def to_dict(self) -> dict[str, object]:
        return {"max_signatures": self.max_signatures, "window_seconds": self.window_seconds}

    @classmethod
    def from_dict(cls, data: object) -> RateLimit:
        d = expect_dict(data, "", frozenset({"max_signatures", "window_seconds"}))
        return cls(json_int(d["max_signatures"], "max_signatures"), json_int(d["window_seconds"], "window_seconds"))


@dataclass(frozen=True)
class KeyPolicy:
    """Who may request signatures with a key, and which ``approval_quorum`` of ``approvers`` must approve.

    ``requesters`` may be empty: nobody can then request (a frozen key). A name may be both a
    requester and an approver; its approval then counts like anyone else's.

    ``refresh_period_s`` (0: none; else 60 s .. 366 days): the key is refreshed (issue 11) when
    its shares are this old; the coordinator runs the refresh itself and each node takes part
    only once its own share of the key is at least this old (:func:`governance.keyop.refresh_due`).
    Encoded only when set, so policies without it keep their encodings, digests and signatures.
    """

    version: int
    approvers: Mapping[str, bytes]
    approval_quorum: int
    requesters: frozenset[str]
    ttl_seconds: int  # the longest a request may live (expires_at - created_at)
    rate_limit: RateLimit
    refresh_period_s: int = 0

    def __post_init__(self) -> None:
        check_int(self.version, "version", 1, MAX_VERSION)
        approvers = check_members(self.approvers, "approvers", what="approver")
        object.__setattr__(self, "approvers", approvers)
        check_int(self.approval_quorum, "approval_quorum", 1, len(approvers))
        check_name_set(self.requesters, "requesters")
        object.__setattr__(self, "requesters", frozenset(self.requesters))
        check_int(self.ttl_seconds, "ttl_seconds", 1, MAX_TTL_SECONDS)
        if not isinstance(self.rate_limit, RateLimit):
            raise GovernanceError("rate_limit", "must be a RateLimit")
        if self.refresh_period_s != 0:
            check_int(self.refresh_period_s, "refresh_period_s", MIN_REFRESH_PERIOD_S, MAX_REFRESH_PERIOD_S)

    def __hash__(self) -> int:
        return hash(self.encode())

    def encode(self) -> bytes:
        """The canonical encoding (computed once per instance: every field is immutable and checked
        at construction; issue 14: a request's decisions asked for :meth:`digest` several times)."""
        return encoded_once(self, self._encode)

    def _encode(self) -> bytes:
        enc = Encoder(KEY_POLICY_TAG).uint(self.version)
        _encode_members(enc, self.approvers)
        enc.uint(self.approval_quorum).count(len(self.requesters))
        for name in sorted(self.requesters):
            enc.text(name)
        enc.uint(self.ttl_seconds)
        enc.uint(self.rate_limit.max_signatures).uint(self.rate_limit.window_seconds)
        if self.refresh_period_s:
            enc.uint(self.refresh_period_s)
        return enc.finish()

    def digest(self) -> bytes:
        """SHA-256 of the canonical encoding; what a :class:`PolicyChange` names as previous."""
        return sha256(self.encode())

    def to_bytes(self) -> bytes:
        return self.encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyPolicy:
        dec = Decoder(data, KEY_POLICY_TAG)
        version = dec.uint("version")
        approvers = _decode_members(dec, "approvers")
        quorum = dec.uint("approval_quorum")
        requesters: list[str] = []
        for i in range(dec.count("requesters", max_count=MAX_MEMBERS)):
            name = dec.text(f"requesters[{i}]")
            if requesters and not name > requesters[-1]:
                raise GovernanceError(f"requesters[{i}]", "not in canonical (sorted, unique) order")
            requesters.append(name)
        ttl = dec.uint("ttl_seconds")
        max_signatures = dec.uint("rate_limit.max_signatures")
        window = dec.uint("rate_limit.window_seconds")
        period = 0 if dec.at_end() else dec.uint("refresh_period_s")  # explicit 0: not canonical (check_canonical)
        dec.finish()
        with field_prefix("rate_limit"):
            rate = RateLimit(max_signatures, window)
        out = cls(version, approvers, quorum, frozenset(requesters), ttl, rate, period)
        check_canonical(out.encode(), data)
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "version": self.version,
            "approvers": members_to_dict(self.approvers),
            "approval_quorum": self.approval_quorum,
            "requesters": sorted(self.requesters),
            "ttl_seconds": self.ttl_seconds,
            "rate_limit": self.rate_limit.to_dict(),
        } | ({"refresh_period_s": self.refresh_period_s} if self.refresh_period_s else {})

    @classmethod
    def from_dict(cls, data: object) -> KeyPolicy:
        keys = frozenset({"version", "approvers", "approval_quorum", "requesters", "ttl_seconds", "rate_limit"})
        optional = {"refresh_period_s"} & set(data) if isinstance(data, dict) else set()
        d = expect_dict(data, "", keys | optional)
        requesters = d["requesters"]
        if not isinstance(requesters, list) or not all(isinstance(r, str) for r in requesters):
            raise GovernanceError("requesters", "must be a list of names")
        if len(set(requesters)) != len(requesters):
            raise GovernanceError("requesters", "lists a name twice")
        with field_prefix("rate_limit"):
            rate = RateLimit.from_dict(d["rate_limit"])
        return cls(
            version=json_int(d["version"], "version"),
            approvers=members_from_dict(d["approvers"], "approvers"),
            approval_quorum=json_int(d["approval_quorum"], "approval_quorum"),
            requesters=frozenset(requesters),
            ttl_seconds=json_int(d["ttl_seconds"], "ttl_seconds"),
            rate_limit=rate,
            refresh_period_s=json_int(d["refresh_period_s"], "refresh_period_s") if "refresh_period_s" in d else 0,
        )


# --- policy changes --------------------------------------------------------------------------


def _check_scope(value: object, field: str = "scope") -> bytes:
    if isinstance(value, (bytes, bytearray)) and bytes(value) == DEFAULT_SCOPE:
        return DEFAULT_SCOPE
    if not isinstance(value, (bytes, bytearray)) or len(value) != KEY_ID_LEN:
        raise GovernanceError(field, f"must be a {KEY_ID_LEN}-byte key id or {DEFAULT_SCOPE!r}")
    return bytes(value)


@dataclass(frozen=True)
class PolicyChange:
    """Replace the policy of ``scope`` (key id or :data:`DEFAULT_SCOPE`) by ``new_policy``.

    ``previous_digest`` is the :meth:`KeyPolicy.digest` of the policy being replaced, ``None``
    for the first policy of the scope. ``governance_root`` is the :meth:`AdminSet.digest` of the
    cluster the change is for. Admins sign :meth:`encode`.
    """

    scope: bytes
    new_policy: KeyPolicy
    previous_digest: bytes | None
    governance_root: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "scope", _check_scope(self.scope))
        if not isinstance(self.new_policy, KeyPolicy):
            raise GovernanceError("new_policy", "must be a KeyPolicy")
        if self.previous_digest is not None:
            object.__setattr__(
                self, "previous_digest", check_bytes(self.previous_digest, "previous_digest", length=DIGEST_LEN)
            )
        object.__setattr__(
            self, "governance_root", check_bytes(self.governance_root, "governance_root", length=DIGEST_LEN)
        )

    def encode(self) -> bytes:
        return (
            Encoder(POLICY_CHANGE_TAG)
            .raw(self.governance_root)
            .raw(self.scope)
            .raw(self.new_policy.encode())
            .optional(self.previous_digest)
            .finish()
        )

    def to_bytes(self) -> bytes:
        return self.encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> PolicyChange:
        dec = Decoder(data, POLICY_CHANGE_TAG)
        out = cls._decode_body(dec)
        dec.finish()
        check_canonical(out.encode(), data)
        return out

    @classmethod
    def _decode_body(cls, dec: Decoder) -> PolicyChange:
        root = dec.raw("governance_root", length=DIGEST_LEN)
        scope = _check_scope(dec.raw("scope"))
        policy_bytes = dec.raw("new_policy")
        previous = dec.optional("previous_digest", length=DIGEST_LEN)
        with field_prefix("new_policy"):
            policy = KeyPolicy.from_bytes(policy_bytes)
        return cls(scope, policy, previous, root)

    def digest(self) -> bytes:
        """SHA-256 of :meth:`encode`: a handle for this exact change (e.g. a proposal id)."""
        return sha256(self.encode())

    def to_dict(self) -> dict[str, object]:
        return {
            "governance_root": self.governance_root.hex(),
            "scope": "default" if self.scope == DEFAULT_SCOPE else self.scope.hex(),
            "new_policy": self.new_policy.to_dict(),
            "previous_digest": None if self.previous_digest is None else self.previous_digest.hex(),
        }

    @classmethod
    def from_dict(cls, data: object) -> PolicyChange:
        d = expect_dict(data, "", frozenset({"governance_root", "scope", "new_policy", "previous_digest"}))
        scope = DEFAULT_SCOPE if d["scope"] == "default" else from_hex(d["scope"], "scope", length=KEY_ID_LEN)
        with field_prefix("new_policy"):
            policy = KeyPolicy.from_dict(d["new_policy"])
        prev = d["previous_digest"]
        previous = None if prev is None else from_hex(prev, "previous_digest", length=DIGEST_LEN)
        root = from_hex(d["governance_root"], "governance_root", length=DIGEST_LEN)
        return cls(scope, policy, previous, root)


@dataclass(frozen=True)
class AdminSignature:
    """One admin's Ed25519 signature over :meth:`PolicyChange.encode`."""

    admin: str
    signature: bytes

    def __post_init__(self) -> None:
        check_name(self.admin, "admin")
        object.__setattr__(self, "signature", check_bytes(self.signature, "signature", length=SIGNATURE_LEN))


# What every admin-signed change (a policy change, a roster change) shares: its signature list's
# shape, its canonical encoding and JSON form, and the quorum rule.


def check_admin_signature_list(value: object) -> tuple[AdminSignature, ...]:
    """``value`` as a tuple of at most :data:`MAX_MEMBERS` AdminSignature (GovernanceError naming
    ``signatures`` or ``signatures[i]``)."""
    if not isinstance(value, (tuple, list)) or len(value) > MAX_MEMBERS:
        raise GovernanceError("signatures", f"must be a sequence of at most {MAX_MEMBERS} AdminSignature")
    for i, s in enumerate(value):
        if not isinstance(s, AdminSignature):
            raise GovernanceError(f"signatures[{i}]", "must be an AdminSignature")
    return tuple(value)


def encode_signed_change(tag: str, change_encoding: bytes, signatures: Sequence[AdminSignature]) -> bytes:
    """``tag``, the change's canonical encoding, then each signature (admin name, 64 bytes)."""
    enc = Encoder(tag).raw(change_encoding).count(len(signatures))
    for s in signatures:
        enc.text(s.admin).raw(s.signature)
    return enc.finish()


def decode_signed_change(data: bytes, tag: str) -> tuple[bytes, tuple[AdminSignature, ...]]:
    """The change's encoding (to be decoded by its own class) and the signatures of
    :func:`encode_signed_change`'s output (strict; GovernanceError naming the field)."""
    dec = Decoder(data, tag)
    change_bytes = dec.raw("change")
    sigs: list[AdminSignature] = []
    for i in range(dec.count("signatures", max_count=MAX_MEMBERS)):
        admin = dec.text(f"signatures[{i}].admin")
        signature = dec.raw(f"signatures[{i}].signature", length=SIGNATURE_LEN)
        with field_prefix(f"signatures[{i}]"):
            sigs.append(AdminSignature(admin, signature))
    dec.finish()
    return change_bytes, tuple(sigs)


def admin_signatures_to_list(signatures: Sequence[AdminSignature]) -> list[dict[str, str]]:
    return [{"admin": s.admin, "signature": s.signature.hex()} for s in signatures]


def admin_signatures_from_list(value: object) -> tuple[AdminSignature, ...]:
    """The inverse of :func:`admin_signatures_to_list` (GovernanceError naming the field)."""
    if not isinstance(value, list) or len(value) > MAX_MEMBERS:
        raise GovernanceError("signatures", f"must be a list of at most {MAX_MEMBERS} objects")
    sigs: list[AdminSignature] = []
    for i, item in enumerate(value):
        field = f"signatures[{i}]"
        s = expect_dict(item, field, frozenset({"admin", "signature"}))
        with field_prefix(field):
            admin = check_name(s["admin"], "admin")
            sigs.append(AdminSignature(admin, from_hex(s["signature"], "signature", length=SIGNATURE_LEN)))
    return tuple(sigs)


def require_admin_quorum(admins: AdminSet, message: bytes, signatures: Sequence[AdminSignature]) -> None:
    """Every signature must be by a known admin and verify over ``message`` (else an error naming
    it); at least ``admins.quorum`` *distinct* admins must have signed (a repeated admin counts once)."""
    if isinstance(signatures, (str, bytes)) or not isinstance(signatures, Sequence):
        raise GovernanceError("signatures", "must be a sequence of AdminSignature")
    if len(signatures) > MAX_MEMBERS:
        raise GovernanceError("signatures", f"more than {MAX_MEMBERS} signatures")
    signed: set[str] = set()
    for i, s in enumerate(signatures):
        field = f"signatures[{i}]"
        if not isinstance(s, AdminSignature):
            raise GovernanceError(field, "must be an AdminSignature")
        key = admins.admins.get(s.admin)
        if key is None:
            raise GovernanceError(join(field, "admin"), f"{s.admin!r} is not an admin", subject=s.admin)
        if not ed25519_verify(key, s.signature, message):
            raise GovernanceError(
                join(field, "signature"), f"signature by admin {s.admin!r} does not verify over this change", subject=s.admin
            )
        signed.add(s.admin)
    if len(signed) < admins.quorum:
        raise GovernanceError("signatures", f"{len(signed)} distinct admin(s) signed, {admins.quorum} required")


@dataclass(frozen=True)
class SignedPolicyChange:
    """A change with the admin signatures collected for it: what crosses process boundaries."""

    change: PolicyChange
    signatures: tuple[AdminSignature, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.change, PolicyChange):
            raise GovernanceError("change", "must be a PolicyChange")
        object.__setattr__(self, "signatures", check_admin_signature_list(self.signatures))

    def to_bytes(self) -> bytes:
        return encode_signed_change(SIGNED_POLICY_CHANGE_TAG, self.change.encode(), self.signatures)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedPolicyChange:
        change_bytes, sigs = decode_signed_change(data, SIGNED_POLICY_CHANGE_TAG)
        with field_prefix("change"):
            change = PolicyChange.from_bytes(change_bytes)
        out = cls(change, sigs)
        check_canonical(out.to_bytes(), data)
        return out

    def to_dict(self) -> dict[str, object]:
        return {"change": self.change.to_dict(), "signatures": admin_signatures_to_list(self.signatures)}

    @classmethod
    def from_dict(cls, data: object) -> SignedPolicyChange:
        d = expect_dict(data, "", frozenset({"change", "signatures"}))
        with field_prefix("change"):
            change = PolicyChange.from_dict(d["change"])
        return cls(change, admin_signatures_from_list(d["signatures"]))

    def verify(self, admins: AdminSet, current: KeyPolicy | None) -> KeyPolicy:
        """Shorthand for :func:`verify_policy_change` on this change and its signatures."""
        return verify_policy_change(admins, current, self.change, self.signatures)


def sign_policy_change(change: PolicyChange, admin_name: str, private_key: Ed25519PrivateKey) -> AdminSignature:
    """Sign ``change`` as admin ``admin_name``."""
    if not isinstance(change, PolicyChange):
        raise GovernanceError("change", "must be a PolicyChange")
    check_name(admin_name, "admin_name")
    key = check_private_key(private_key, "private_key")
    return AdminSignature(admin_name, key.sign(change.encode()))


def check_admin_signature(admins: AdminSet, change: PolicyChange, signature: AdminSignature) -> None:
    """Raise :class:`GovernanceError` unless ``signature`` is a valid signature of ``change`` by
    an admin of ``admins`` (for the coordinator, to vet each signature as it is collected; the
    change's governance root is checked too)."""
    if not isinstance(admins, AdminSet):
        raise GovernanceError("admins", "must be an AdminSet")
    if not isinstance(change, PolicyChange):
        raise GovernanceError("change", "must be a PolicyChange")
    if not isinstance(signature, AdminSignature):
        raise GovernanceError("signature", "must be an AdminSignature")
    if not hmac.compare_digest(change.governance_root, admins.digest()):
        raise GovernanceError(
            "governance_root", "names another governance root (a change made for another cluster or admin set)"
        )
    key = admins.admins.get(signature.admin)
    if key is None:
        raise GovernanceError("admin", f"{signature.admin!r} is not an admin", subject=signature.admin)
    if not ed25519_verify(key, signature.signature, change.encode()):
        raise GovernanceError(
            "signature", f"signature by admin {signature.admin!r} does not verify over this change", subject=signature.admin
        )


def verify_policy_change(
    admins: AdminSet,
    current: KeyPolicy | None,
    change: PolicyChange,
    signatures: Sequence[AdminSignature],
) -> KeyPolicy:
    """The new policy if ``change`` may replace ``current``; else :class:`GovernanceError`.

    The change must name ``admins.digest()`` as its governance root (else it was made for
    another cluster or another admin set). Every signature must be by a known admin and verify (else an error naming it); at least
    ``admins.quorum`` *distinct* admins must have signed (a repeated admin counts once);
    ``previous_digest`` must be ``current.digest()`` (absent iff ``current`` is None); and the
    new version must be ``current.version + 1`` (1 for the first policy of a scope).
    """
    if not isinstance(admins, AdminSet):
        raise GovernanceError("admins", "must be an AdminSet")
    if current is not None and not isinstance(current, KeyPolicy):
        raise GovernanceError("current", "must be a KeyPolicy or None")
    if not isinstance(change, PolicyChange):
        raise GovernanceError("change", "must be a PolicyChange")
    if not hmac.compare_digest(change.governance_root, admins.digest()):
        raise GovernanceError(
            "governance_root", "names another governance root (a change made for another cluster or admin set)"
        )
    require_admin_quorum(admins, change.encode(), signatures)

    if current is None:
        if change.previous_digest is not None:
            raise GovernanceError("previous_digest", "must be absent: the scope has no policy yet")
        expected_version = 1
    else:
        if change.previous_digest is None:
            raise GovernanceError("previous_digest", "missing: the scope already has a policy")
        if not hmac.compare_digest(change.previous_digest, current.digest()):
            raise GovernanceError("previous_digest", "is not the digest of the current policy (stale or replayed change)")
        expected_version = current.version + 1
    if change.new_policy.version != expected_version:
        raise GovernanceError("new_policy.version", f"must be {expected_version}, got {change.new_policy.version}")
    return change.new_policy
