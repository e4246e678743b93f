"""The genesis document of a production cluster (issue 13): build, sign, verify, show.

``genesis.json`` (public)::

    {"format": "mpcnet-genesis", "version": 1, "threshold": T,
     "admin_set": AdminSet.to_dict(), "initial_policy": SignedPolicyChange.to_dict(),
     "roster_history": [SignedRosterChange.to_dict()],      # roster version 1
     "ca": PEM of the CA certificate,
     "signatures": [{"admin", "signature"}]}                # over governance.enrolment.genesis_message

An admin signs three things with one command: the initial policy change, the roster change and
the genesis message (threshold, admin set, both change digests, CA). A document is valid only
with an admin quorum on each; :func:`Genesis.digest` (SHA-256 of the genesis message) is what an
admin compares before signing (``--expect-digest``). Errors: :class:`EnrolmentError` naming the
field.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance._checks import raw_public_key
from governance.enrolment import genesis_message
from governance.errors import GovernanceError
from governance.policy import (
    DEFAULT_SCOPE,
    AdminSet,
    AdminSignature,
    KeyPolicy,
    PolicyChange,
    RateLimit,
    SignedPolicyChange,
    admin_signatures_from_list,
    admin_signatures_to_list,
    require_admin_quorum,
    sign_policy_change,
)
from governance.roster import (
    Roster,
    RosterChange,
    RosterEntry,
    SignedRosterChange,
    active_entries,
    sign_roster_change,
    verify_roster_history,
)
from governance.text import escape, quote
from mpcnet.common.enrolment import (
    EnrolmentError,
    EnrolmentRequest,
    IdentityRequest,
    check_certificate,
    load_pem_certificate,
    read_json,
)
from mpcnet.common.fsutil import write_atomic
from mpcnet.common.pki import certificate_fingerprint

GENESIS_FORMAT = "mpcnet-genesis"
GENESIS_VERSION = 1
MAX_GENESIS_BYTES = 4 * 1024 * 1024
_KEYS = frozenset({"format", "version", "threshold", "admin_set", "initial_policy", "roster_history", "ca", "signatures"})


@dataclass(frozen=True)
class PolicySpec:
    """The initial default policy's parameters (approvers and requesters come from requests)."""

    approval_quorum: int
    ttl_seconds: int = 3600
    max_signatures: int = 100
    window_seconds: int = 3600


@dataclass(frozen=True)
class Genesis:
    """A (possibly partly signed) genesis document."""

    threshold: int
    admin_set: AdminSet
    initial_policy: SignedPolicyChange
    roster_history: tuple[SignedRosterChange, ...]
    ca_pem: str
    signatures: tuple[AdminSignature, ...] = ()

    @property
    def roster_change(self) -> SignedRosterChange:
        return self.roster_history[0]

    def ca_certificate(self) -> x509.Certificate:
        return load_pem_certificate(self.ca_pem.encode("ascii"), "ca")

    def message(self) -> bytes:
        """The bytes each admin signs besides the two changes (governance.enrolment.genesis_message)."""
        der = self.ca_certificate().public_bytes(serialization.Encoding.DER)
        try:
            return genesis_message(
                self.threshold, self.admin_set.digest(), self.initial_policy.change.digest(), self.roster_change.change.digest(), der,
            )
        except GovernanceError as e:
            raise EnrolmentError(e.field, e.reason) from None

    def digest(self) -> bytes:
        """SHA-256 of :meth:`message` (32 bytes): what an admin compares before signing."""
        return hashlib.sha256(self.message()).digest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": GENESIS_FORMAT, "version": GENESIS_VERSION, "threshold": self.threshold,
            "admin_set": self.admin_set.to_dict(), "initial_policy": self.initial_policy.to_dict(),
            "roster_history": [c.to_dict() for c in self.roster_history], "ca": self.ca_pem,
            "signatures": admin_signatures_to_list(self.signatures),
        }

    @classmethod
    def from_dict(cls, doc: object) -> Genesis:
        """Parse (not verify) a genesis document: exact keys and every object's own rules."""
        if not isinstance(doc, dict):
            raise EnrolmentError("genesis", "must be a JSON object")
        if doc.get("format") != GENESIS_FORMAT:
            raise EnrolmentError("format", f"must be {GENESIS_FORMAT!r}")
        missing, extra = sorted(_KEYS - doc.keys()), sorted(doc.keys() - _KEYS)
        if missing or extra:
            raise EnrolmentError(missing[0] if missing else quote(extra[0]), "missing" if missing else "unknown field")
        if doc["version"] != GENESIS_VERSION or isinstance(doc["version"], bool):
            raise EnrolmentError("version", f"must be {GENESIS_VERSION}")
        t = doc["threshold"]
        if not isinstance(t, int) or isinstance(t, bool) or not 2 <= t <= 255:
            raise EnrolmentError("threshold", "must be an integer in [2, 255]")
        history = doc["roster_history"]
        if not isinstance(history, list) or len(history) != 1:
            raise EnrolmentError("roster_history", "must hold exactly the version-1 roster change")
        if not isinstance(doc["ca"], str) or not doc["ca"].isascii():
            raise EnrolmentError("ca", "must be a PEM certificate")
        field = "admin_set"
        try:
            admin_set = AdminSet.from_dict(doc["admin_set"])
            field = "initial_policy"
            policy = SignedPolicyChange.from_dict(doc["initial_policy"])
            field = "roster_history[0]"
            roster = SignedRosterChange.from_dict(history[0])
            field = "signatures"
            sigs = admin_signatures_from_list(doc["signatures"])
        except GovernanceError as e:
            raise EnrolmentError(f"{field}.{e.field}".rstrip("."), e.reason) from None
        out = cls(t, admin_set, policy, (roster,), doc["ca"], sigs)
        out.ca_certificate()
        return out


def load_genesis(path: Path) -> Genesis:
    """:meth:`Genesis.from_dict` of the file ``path``."""
    return Genesis.from_dict(read_json(path, "genesis", MAX_GENESIS_BYTES))


def write_genesis(path: Path, genesis: Genesis) -> None:
    """Write ``genesis`` (indented JSON, mode 0644, atomic)."""
    write_atomic(path, (json.dumps(genesis.to_dict(), indent=2, sort_keys=True) + "\n").encode("ascii"), 0o644)


def _quorum_error(e: GovernanceError, what: str) -> EnrolmentError:
    if e.field.endswith("signatures") and "required" in e.reason:
        return EnrolmentError(what, f"signed by too few admins ({e.reason})")
    return EnrolmentError(f"{what}.{e.field}", e.reason)


def verify_genesis(genesis: Genesis) -> Roster:
    """The roster version 1 of a genesis carrying an admin quorum on the policy change, the
    roster change and the genesis message; EnrolmentError ("roster: signed by too few admins",
    a bad signature naming it, a roster whose active nodes are fewer than the threshold)."""
    try:
        roster = verify_roster_history(genesis.admin_set, genesis.roster_history)
    except GovernanceError as e:
        raise _quorum_error(e, "roster") from None
    try:
        genesis.initial_policy.verify(genesis.admin_set, None)
    except GovernanceError as e:
        raise _quorum_error(e, "initial_policy") from None
    try:
        require_admin_quorum(genesis.admin_set, genesis.message(), genesis.signatures)
    except GovernanceError as e:
        raise _quorum_error(e, "genesis") from None
    if genesis.initial_policy.change.governance_root != genesis.admin_set.digest():
        raise EnrolmentError("initial_policy", "names another admin set")
    if len(active_entries(roster)) < genesis.threshold:
        raise EnrolmentError("threshold", f"{genesis.threshold} exceeds the roster's {len(active_entries(roster))} nodes")
    return roster


def node_entry(index: int, request: EnrolmentRequest, cert_pem: bytes, ca_pem: bytes) -> RosterEntry:
    """Roster entry ``index`` for a verified node request and its certificate (PEM), checked
    against the request (public key, CN/OU, SAN) and the CA (``ca_pem``); tls_fingerprint is the
    SHA-256 of the certificate's DER. EnrolmentError naming the field."""
    if not isinstance(request, EnrolmentRequest) or request.role != "node":
        raise EnrolmentError("request", "must be an enrolment request for role node")
    ca = load_pem_certificate(ca_pem, "ca")
    cert = load_pem_certificate(cert_pem, "cert")
    check_certificate(cert, ca, role="node", name=request.name, public_key_der=request.csr_public_key_der(), host=request.host)
    try:
        fingerprint = certificate_fingerprint(cert)
        return RosterEntry(index, request.name, request.identity_key, request.encryption_key, fingerprint, request.endpoint)
    except GovernanceError as e:
        raise EnrolmentError(e.field, e.reason) from None


def _dialled_as(endpoint: str) -> str:
    """``host:port`` as the network sees it: a DNS name without case or trailing dot, an IP
    address in its normal form (so two spellings of one address compare equal)."""
    host, _, port = endpoint.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        host = host.lower().rstrip(".")
    return f"{host}:{int(port)}"


def build_genesis(
    *, threshold: int, ca_pem: bytes, admins: Sequence[IdentityRequest], admin_quorum: int,
    approvers: Sequence[IdentityRequest], requesters: Sequence[IdentityRequest], policy: PolicySpec,
    nodes: Sequence[tuple[EnrolmentRequest, bytes]], cluster_id: bytes | None = None,
) -> Genesis:
    """An unsigned genesis from verified requests: the admin set (``admins``, ``admin_quorum``,
    a random cluster id), the default policy (``approvers``, ``requesters``, ``policy``) and
    roster version 1 with ``nodes`` (request, certificate PEM) as indices 1.. in order, each
    certificate checked against its request and the CA. EnrolmentError naming the field
    (``admin[i]``, ``node[i]``, ...) for a wrong role, a duplicate name or key, a bad certificate."""
    ca = load_pem_certificate(ca_pem, "ca")
    for field, reqs, role in (("admin", admins, "admin"), ("approver", approvers, "approver"), ("requester", requesters, "requester")):
        seen: set[str] = set()
        for i, person in enumerate(reqs):
            if not isinstance(person, IdentityRequest) or person.role != role:
                raise EnrolmentError(f"{field}[{i}]", f"must be an identity request for role {role}")
            if person.name in seen:
                raise EnrolmentError(f"{field}[{i}]", f"name {quote(person.name)} given twice")
            seen.add(person.name)
    if not nodes:
        raise EnrolmentError("node", "give at least one node")
    entries = []
    for i, (r, cert_pem) in enumerate(nodes):
        try:
            entries.append(node_entry(i + 1, r, cert_pem, ca_pem))
        except EnrolmentError as e:
            raise EnrolmentError(f"node[{i}].{e.field}", e.reason) from None
    try:
        admin_set = AdminSet({r.name: r.signing_key for r in admins}, admin_quorum, cluster_id or secrets.token_bytes(32))
    except GovernanceError as e:
        raise EnrolmentError(f"admin_set.{e.field}", e.reason) from None
    try:
        key_policy = KeyPolicy(
            version=1, approvers={r.name: r.signing_key for r in approvers}, approval_quorum=policy.approval_quorum,
            requesters=frozenset(r.name for r in requesters), ttl_seconds=policy.ttl_seconds,
            rate_limit=RateLimit(policy.max_signatures, policy.window_seconds), refresh_period_s=0,
        )
        change = PolicyChange(DEFAULT_SCOPE, key_policy, None, admin_set.digest())
    except GovernanceError as e:
        raise EnrolmentError(f"policy.{e.field}", e.reason) from None
    try:
        roster = Roster(1, 0, tuple(entries))  # refuses duplicate names, keys, fingerprints
    except GovernanceError as e:
        raise EnrolmentError(f"roster.{e.field}", e.reason) from None
    dialled: dict[str, int] = {}
    for i, (r, _) in enumerate(nodes):  # one address, two entries: one of them is never reachable
        where = _dialled_as(r.endpoint)
        if where in dialled:
            raise EnrolmentError(f"node[{i}].endpoint", f"{quote(r.endpoint)} is node[{dialled[where]}]'s endpoint too")
        dialled[where] = i
    if not 2 <= threshold <= len(entries):
        raise EnrolmentError("threshold", f"need 2 <= threshold <= {len(entries)} nodes, got {threshold}")
    roster_change = RosterChange(roster, None, admin_set.digest())
    return Genesis(
        threshold, admin_set, SignedPolicyChange(change, ()), (SignedRosterChange(roster_change, ()),),
        ca.public_bytes(serialization.Encoding.PEM).decode("ascii"),
    )


def _add(sigs: tuple[AdminSignature, ...], new: AdminSignature) -> tuple[AdminSignature, ...]:
    return sigs if any(s.admin == new.admin for s in sigs) else sigs + (new,)


def sign_genesis(genesis: Genesis, name: str, key: Ed25519PrivateKey, *, expect_digest: bytes | None = None) -> Genesis:
    """``genesis`` with admin ``name``'s signatures on the policy change, the roster change and
    the genesis message (deterministic Ed25519: signing twice changes nothing). EnrolmentError
    naming ``name`` (not an admin), ``signing_key`` (not that admin's key) or ``expect_digest``."""
    if expect_digest is not None and genesis.digest() != expect_digest:
        raise EnrolmentError("expect_digest", f"the genesis digest is {genesis.digest().hex()}, not the one expected")
    want = genesis.admin_set.admins.get(name)
    if want is None:
        raise EnrolmentError("name", f"{quote(name)} is not an admin of this genesis")
    if raw_public_key(key) != want:
        raise EnrolmentError("signing_key", f"is not the key of admin {quote(name)} in the admin set")
    policy = replace(genesis.initial_policy, signatures=_add(
        genesis.initial_policy.signatures, sign_policy_change(genesis.initial_policy.change, name, key)))
    rc = genesis.roster_change
    roster = replace(rc, signatures=_add(rc.signatures, sign_roster_change(rc.change, name, key)))
    sigs = _add(genesis.signatures, AdminSignature(name, key.sign(genesis.message())))
    return replace(genesis, initial_policy=policy, roster_history=(roster,), signatures=sigs)


def show_lines(genesis: Genesis) -> list[str]:
    """What an admin reads before signing, one escaped line each: digest, threshold, CA, admin
    set, the default policy, every roster entry, who signed."""
    a, p = genesis.admin_set, genesis.initial_policy.change.new_policy
    ca = genesis.ca_certificate()
    lines = [
        f"genesis digest: {genesis.digest().hex()}",
        f"governance root: {a.digest().hex()}",
        f"threshold: {genesis.threshold}",
        f"ca: {escape(ca.subject.rfc4514_string())} (sha256 {certificate_fingerprint(ca).hex()})",
        f"admins (quorum {a.quorum}): " + ", ".join(f"{escape(n)}={k.hex()}" for n, k in sorted(a.admins.items())),
        f"approvers (quorum {p.approval_quorum}): " + ", ".join(f"{escape(n)}={k.hex()}" for n, k in sorted(p.approvers.items())),
        "requesters: " + ", ".join(escape(n) for n in sorted(p.requesters)),
        f"requests live {p.ttl_seconds} s; at most {p.rate_limit.max_signatures} signatures per {p.rate_limit.window_seconds} s",
    ]
    for e in genesis.roster_change.change.new_roster.entries:
        lines.append(
            f"node {e.index}: {escape(e.name)} at {escape(e.endpoint)} identity {e.identity_key.hex()} "
            f"encryption {e.encryption_key.hex()} tls sha256 {e.tls_fingerprint.hex()}"
        )
    signed = sorted({s.admin for s in genesis.signatures})
    lines.append("signed by: " + (", ".join(escape(n) for n in signed) if signed else "nobody yet"))
    return lines
