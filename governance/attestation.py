"""Policy attestations: one admin's signed confirmation of every scope's current policy head.

A node learns policy changes from whoever pushes them (the coordinator, or an admin directly),
so a coordinator that *withholds* a change could keep nodes signing under the replaced policy.
An attestation closes that gap: an admin of the cluster's admin set signs, at ``issued_at_ms``
(Unix milliseconds), the head ``(scope, version, policy digest)`` of *every* scope it knows,
for one governance root (:meth:`governance.policy.AdminSet.digest`). A node signs only while
the newest valid attestation it holds is younger than its configured maximum age *and* names
exactly the heads it enforces for the key's scope and the default scope
(:func:`check_confirms`): a withheld change, or a withheld attestation, stops signing within
that bound instead of letting it succeed under the old policy.

Changing a policy needs the admin quorum; *confirming* the heads needs one admin, because a
confirmation grants nothing new: it can only name heads that an admin quorum signed (a node
checks that the heads it enforces, each installed with a quorum, are the ones named). A rogue
single admin can therefore (a) keep a stale node signing under the head it holds for up to one
more maximum age by attesting that old head (no worse than the coordinator withholding the
change, which the quorum of honest admins repairs with a direct push), or (b) stop signing by
attesting heads that do not exist; it cannot make a node accept a policy without the quorum.

Encoding (:mod:`governance.encoding`): ``MPCNET/v1/gov/policy-attestation`` with the
governance root, ``issued_at_ms`` (u64), the signing admin's name and the heads (a list, sorted
by scope, unique): each a nested ``MPCNET/v1/gov/policy-head`` (scope, version, digest). The
signed form ``MPCNET/v1/gov/signed-policy-attestation`` carries the attestation encoding and
the Ed25519 signature over it. The admin's name is inside what is signed, so a signature cannot
be re-attributed to another admin.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._checks import SIGNATURE_LEN, check_bytes, check_int, check_name, check_private_key, ed25519_verify
from .encoding import Decoder, Encoder, domain_tag, sha256
from .errors import GovernanceError, field_prefix
from .policy import DEFAULT_SCOPE, DIGEST_LEN, KEY_ID_LEN, MAX_VERSION, AdminSet

POLICY_HEAD_TAG = domain_tag("policy-head")
POLICY_ATTESTATION_TAG = domain_tag("policy-attestation")
SIGNED_POLICY_ATTESTATION_TAG = domain_tag("signed-policy-attestation")

MAX_HEADS = 100_000  # scopes named by one attestation (one per key with its own policy, + default)
MAX_TIME_MS = 2**62

# refusal kinds (the ``kind`` of :class:`AttestationRefusal`, the node's ``mpc-governance`` value)
STALE = "stale-policy"  # the attestation names a newer head than the node holds
UNCONFIRMED = "policy-unconfirmed"  # no valid, fresh attestation of the node's heads


def _check_scope(value: object, field: str) -> bytes:
    if isinstance(value, (bytes, bytearray)) and bytes(value) == DEFAULT_SCOPE:
        return DEFAULT_SCOPE
    if not isinstance(value, (bytes, bytearray)) or len(value) != KEY_ID_LEN:
        raise GovernanceError(field, f"must be a {KEY_ID_LEN}-byte key id or {DEFAULT_SCOPE!r}")
    return bytes(value)


def scope_text(scope: bytes) -> str:
    """``default`` or the key id in hex (for messages; never caller text)."""
    return "default" if scope == DEFAULT_SCOPE else scope.hex()


@dataclass(frozen=True)
class PolicyHead:
    """The policy in force for one scope: its version and :meth:`KeyPolicy.digest` (32 bytes)."""

    scope: bytes
    version: int
    digest: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "scope", _check_scope(self.scope, "scope"))
        check_int(self.version, "version", 1, MAX_VERSION)
        object.__setattr__(self, "digest", check_bytes(self.digest, "digest", length=DIGEST_LEN))

    def encode(self) -> bytes:
        return Encoder(POLICY_HEAD_TAG).raw(self.scope).uint(self.version).raw(self.digest).finish()

    @classmethod
    def from_bytes(cls, data: bytes) -> PolicyHead:
        dec = Decoder(data, POLICY_HEAD_TAG)
        scope = _check_scope(dec.raw("scope"), "scope")
        version = dec.uint("version")
        digest = dec.raw("digest", length=DIGEST_LEN)
        dec.finish()
        return cls(scope, version, digest)

    def same(self, other: PolicyHead | None) -> bool:
        return (
            other is not None
            and self.scope == other.scope
            and self.version == other.version
            and hmac.compare_digest(self.digest, other.digest)
        )

    def describe(self) -> str:
        return f"{scope_text(self.scope)} v{self.version} ({self.digest.hex()[:16]})"


@dataclass(frozen=True)
class PolicyAttestation:
    """Admin ``admin`` confirms, at ``issued_at_ms``, that ``heads`` (sorted by scope, one per
    scope, the default scope included) are every policy in force under ``governance_root``."""

    governance_root: bytes
    issued_at_ms: int
    admin: str
    heads: tuple[PolicyHead, ...]

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "governance_root", check_bytes(self.governance_root, "governance_root", length=DIGEST_LEN)
        )
        check_int(self.issued_at_ms, "issued_at_ms", 0, MAX_TIME_MS)
        check_name(self.admin, "admin")
        if not isinstance(self.heads, (tuple, list)) or not 1 <= len(self.heads) <= MAX_HEADS:
            raise GovernanceError("heads", f"must be a sequence of 1..{MAX_HEADS} PolicyHead")
        for i, h in enumerate(self.heads):
            if not isinstance(h, PolicyHead):
                raise GovernanceError(f"heads[{i}]", "must be a PolicyHead")
            if i and not h.scope > self.heads[i - 1].scope:
                raise GovernanceError(f"heads[{i}].scope", "not in canonical (sorted, unique) order")
        object.__setattr__(self, "heads", tuple(self.heads))
        if self.head(DEFAULT_SCOPE) is None:
            raise GovernanceError("heads", "must name the default scope's head")

    @classmethod
    def build(cls, governance_root: bytes, issued_at_ms: int, admin: str, heads: Sequence[PolicyHead]) -> PolicyAttestation:
        """Like the constructor, with ``heads`` in any order (sorted here)."""
        return cls(governance_root, issued_at_ms, admin, tuple(sorted(heads, key=lambda h: h.scope)))

    def head(self, scope: bytes) -> PolicyHead | None:
        """The head named for ``scope``, or None (the attestation says the scope has no policy)."""
        lo, hi = 0, len(self.heads)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.heads[mid].scope < scope:
                lo = mid + 1
            else:
                hi = mid
        return self.heads[lo] if lo < len(self.heads) and self.heads[lo].scope == scope else None

    def encode(self) -> bytes:
        enc = Encoder(POLICY_ATTESTATION_TAG).raw(self.governance_root).uint(self.issued_at_ms).text(self.admin)
        enc.count(len(self.heads))
        for h in self.heads:
            enc.raw(h.encode())
        return enc.finish()

    @classmethod
    def from_bytes(cls, data: bytes) -> PolicyAttestation:
        dec = Decoder(data, POLICY_ATTESTATION_TAG)
        root = dec.raw("governance_root", length=DIGEST_LEN)
        issued = dec.uint("issued_at_ms")
        admin = dec.text("admin")
        heads = []
        for i in range(dec.count("heads", max_count=MAX_HEADS)):
            raw = dec.raw(f"heads[{i}]")
            with field_prefix(f"heads[{i}]"):
                heads.append(PolicyHead.from_bytes(raw))
        dec.finish()
        out = cls(root, issued, admin, tuple(heads))
        if out.encode() != bytes(data):
            raise GovernanceError("encoding", "not the canonical encoding")
        return out

    def digest(self) -> bytes:
        return sha256(self.encode())


@dataclass(frozen=True)
class SignedPolicyAttestation:
    """An attestation with its admin's Ed25519 signature over :meth:`PolicyAttestation.encode`."""

    attestation: PolicyAttestation
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.attestation, PolicyAttestation):
            raise GovernanceError("attestation", "must be a PolicyAttestation")
        object.__setattr__(self, "signature", check_bytes(self.signature, "signature", length=SIGNATURE_LEN))

    @property
    def issued_at_ms(self) -> int:
        return self.attestation.issued_at_ms

    def to_bytes(self) -> bytes:
        return Encoder(SIGNED_POLICY_ATTESTATION_TAG).raw(self.attestation.encode()).raw(self.signature).finish()

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedPolicyAttestation:
        dec = Decoder(data, SIGNED_POLICY_ATTESTATION_TAG)
        body = dec.raw("attestation")
        signature = dec.raw("signature", length=SIGNATURE_LEN)
        dec.finish()
        with field_prefix("attestation"):
            att = PolicyAttestation.from_bytes(body)
        return cls(att, signature)

    def verify(self, admins: AdminSet) -> PolicyAttestation:
        """Shorthand for :func:`verify_attestation`."""
        return verify_attestation(admins, self)


def sign_attestation(attestation: PolicyAttestation, private_key: Ed25519PrivateKey) -> SignedPolicyAttestation:
    """Sign ``attestation`` with its admin's key (the caller holds the key of ``attestation.admin``)."""
    if not isinstance(attestation, PolicyAttestation):
        raise GovernanceError("attestation", "must be a PolicyAttestation")
    key = check_private_key(private_key, "private_key")
    return SignedPolicyAttestation(attestation, key.sign(attestation.encode()))


def verify_attestation(admins: AdminSet, signed: SignedPolicyAttestation) -> PolicyAttestation:
    """The attestation if it names ``admins.digest()`` and is signed by the admin it names, an
    admin of ``admins``; else :class:`GovernanceError` naming the field."""
    if not isinstance(admins, AdminSet):
        raise GovernanceError("admins", "must be an AdminSet")
    if not isinstance(signed, SignedPolicyAttestation):
        raise GovernanceError("attestation", "must be a SignedPolicyAttestation")
    att = signed.attestation
    if not hmac.compare_digest(att.governance_root, admins.digest()):
        raise GovernanceError(
            "attestation.governance_root", "names another governance root (made for another cluster or admin set)"
        )
    key = admins.admins.get(att.admin)
    if key is None:
        raise GovernanceError("attestation.admin", f"{att.admin!r} is not an admin", subject=att.admin)
    if not ed25519_verify(key, signed.signature, att.encode()):
        raise GovernanceError(
            "signature", f"signature by admin {att.admin!r} does not verify over this attestation", subject=att.admin
        )
    return att


class AttestationRefusal(GovernanceError):
    """:func:`check_confirms` refuses: ``kind`` is :data:`STALE` or :data:`UNCONFIRMED`."""

    def __init__(self, kind: str, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.kind = kind


def check_confirms(
    attestation: PolicyAttestation | None,
    held: Mapping[bytes, PolicyHead | None],
    *,
    now_ms: int,
    max_age_ms: int,
    future_tolerance_ms: int,
) -> None:
    """Raise :class:`AttestationRefusal` unless ``attestation`` (already verified; ``None``: the
    node holds none) confirms the heads a node holds.

    ``held`` maps each scope that matters (the key's own scope and the default scope) to the
    head the node enforces there, ``None`` for a scope without a policy of its own. The
    attestation must be at most ``max_age_ms`` old and at most ``future_tolerance_ms`` in the
    future by ``now_ms`` (the node's clock), and must name exactly those heads; if it names a
    newer version for a scope the node is stale (:data:`STALE`), any other difference (older,
    missing, another digest for the same version) is :data:`UNCONFIRMED`.
    """
    check_int(max_age_ms, "max_age_ms", 1, MAX_TIME_MS)
    check_int(future_tolerance_ms, "future_tolerance_ms", 0, MAX_TIME_MS)
    hint = "an admin must confirm the current policies (mpc policy attest)"
    if attestation is None:
        raise AttestationRefusal(UNCONFIRMED, "policy_attestation", f"missing: no admin-signed attestation is held; {hint}")
    age = now_ms - attestation.issued_at_ms
    if age > max_age_ms:
        raise AttestationRefusal(
            UNCONFIRMED, "policy_attestation.issued_at_ms",
            f"the newest attestation ({attestation.admin}) is {age // 1000} s old, more than the {max_age_ms // 1000} s allowed; {hint}",
        )
    if -age > future_tolerance_ms:
        raise AttestationRefusal(
            UNCONFIRMED, "policy_attestation.issued_at_ms",
            f"issued {-age // 1000} s in the future (more than the {future_tolerance_ms // 1000} s tolerated for clock skew)",
        )
    for scope in sorted(held):
        mine = held[scope]
        named = attestation.head(scope)
        if mine is None and named is None:
            continue
        if mine is not None and mine.same(named):
            continue
        field = f"policy_attestation.heads[{scope_text(scope)}]"
        have = "no policy of its own" if mine is None else mine.describe()
        if named is not None and (mine is None or named.version > mine.version):
            raise AttestationRefusal(
                STALE, field, f"the attestation names {named.describe()}, newer than what this node holds ({have}): it missed a change"
            )
        says = "no policy of its own" if named is None else named.describe()
        raise AttestationRefusal(
            UNCONFIRMED, field, f"the newest attestation names {says}, but this node holds {have}; {hint}"
        )
