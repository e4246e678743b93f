#!/usr/bin/env python3
"""Generate the governance wire-contract test vectors, spec/vectors/*.json (spec/governance-v1.md).

Every vector is made by the Python implementation (``governance``) from FIXED test keys: the
Ed25519 seeds are in ``keys.json`` (bytes 0x01*32, 0x02*32, ...; never use them for anything
real). Ed25519 (RFC 8032) is deterministic, so regenerating gives byte-identical files;
tests/governance/test_vectors.py checks that, and that the Python encoders, decoders and
verifiers reproduce every vector and reject every negative one::

    python scripts/gen_vectors.py            # (re)write spec/vectors/*.json
    python scripts/gen_vectors.py --check    # exit 1 if a committed file is stale or missing

Negative vectors are built by hand, field by field (:func:`_field` etc. below, independent of
:class:`governance.encoding.Encoder`), each from a valid encoding with one defect.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402

from governance.approval import (  # noqa: E402
    ApprovalBundle,
    Decision,
    SigningRequest,
    sign_approval,
)
from governance.attestation import PolicyAttestation, PolicyHead, SignedPolicyAttestation, sign_attestation  # noqa: E402
from governance.encoding import Encoder, domain_tag  # noqa: E402
from governance.errors import GovernanceError  # noqa: E402
from governance.keyop import (  # noqa: E402
    EpochReceipt,
    KeyOperation,
    KeyOpKind,
    SignedKeyOperation,
    sign_epoch_receipt,
    sign_key_operation,
)
from governance.policy import (  # noqa: E402
    DEFAULT_SCOPE,
    AdminSet,
    KeyPolicy,
    PolicyChange,
    RateLimit,
    SignedPolicyChange,
    sign_policy_change,
)
from governance.recovery import (  # noqa: E402
    AGE_HEADER,
    BackupBundle,
    BackupKey,
    BackupPart,
    BackupPiece,
    DrillReport,
    EpochAttestation,
    Officer,
    PieceDelivery,
    PiecePurpose,
    RecoveryConfig,
    RecoveryConfigChange,
    RecoveryOrder,
    RecoveryOrderKind,
    RecoveryReceipt,
    RecoveryTarget,
    SignedBackupPart,
    SignedRecoveryConfigChange,
    SignedRecoveryOrder,
    sign_backup_part,
    sign_drill_report,
    sign_epoch_attestation,
    sign_recovery_config_change,
    sign_recovery_order,
    sign_recovery_receipt,
)
from governance.reservation import Reservation, ReservationReceipt, sign_reservation  # noqa: E402
from governance.roster import (  # noqa: E402
    Roster,
    RosterChange,
    RosterEntry,
    SignedRosterChange,
    add_node,
    revoke_node,
    rotate_keys,
    sign_roster_change,
)

VECTORS_DIR = ROOT / "spec" / "vectors"
SPEC = "spec/governance-v1.md"
GENERATOR = "scripts/gen_vectors.py"

# --- fixed test keys (NEVER real keys) ------------------------------------------------------

KEY_SEEDS: dict[str, tuple[str, int]] = {
    "ada": ("admin", 0x01),
    "bob": ("admin", 0x02),
    "cyd": ("admin", 0x03),
    "alice": ("approver", 0x11),
    "bert": ("approver", 0x12),
    "carol": ("approver", 0x13),
    "node-1": ("node identity (roster index 1, audit component node-1)", 0x21),
    "node-2": ("node identity (roster index 2)", 0x22),
    "node-3": ("node identity (roster index 3)", 0x23),
    "node-1-rotated": ("node identity (roster index 1 after its key rotation, roster.json)", 0x24),
    "node-4": ("node identity (roster index 4, added in roster.json)", 0x25),
}


def _private(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([KEY_SEEDS[name][1]]) * 32)


def _public(name: str) -> bytes:
    return _private(name).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# --- fixed test data ------------------------------------------------------------------------

CLUSTER_ID = bytes([0xC1]) * 32
KEY_A = bytes([0x2B]) * 32  # has its own policy; sorts *before* b"default" (0x64...)
KEY_B = bytes([0x7E]) * 32  # no policy of its own (the default applies); sorts after b"default"
MESSAGE_DIGEST = hashlib.sha256(b"mpcnet test vector: pay 1 BTC to x").digest()
SESSION_ID = bytes([0x5E]) * 32
T0 = 1_750_000_000_000  # Unix milliseconds


def _admin_set() -> AdminSet:
    return AdminSet({n: _public(n) for n in ("ada", "bob", "cyd")}, 2, CLUSTER_ID)


def _default_policy() -> KeyPolicy:
    return KeyPolicy(
        version=1,
        approvers={n: _public(n) for n in ("alice", "bert", "carol")},
        approval_quorum=2,
        requesters=frozenset({"req-1", "ops.bot"}),
        ttl_seconds=3600,
        rate_limit=RateLimit(max_signatures=10, window_seconds=3600),
    )


def _key_a_policy(version: int) -> KeyPolicy:
    if version == 1:
        return KeyPolicy(1, {"alice": _public("alice")}, 1, frozenset({"req-1"}), 600, RateLimit(5, 60))
    # version 2 freezes the key: nobody may request
    return KeyPolicy(2, {n: _public(n) for n in ("bert", "alice")}, 2, frozenset(), 86400, RateLimit(1, 86400))


def _requests() -> list[tuple[str, SigningRequest]]:
    digest = _default_policy().digest()
    return [
        (
            "basic",
            SigningRequest(
                "req_0001", KEY_B, MESSAGE_DIGEST, (0, 1, 2), "req-1", "Pay supplier invoice #42, second line",
                T0, T0 + 600_000, 1, digest,
            ),
        ),
        (
            "unicode-description-empty-path",
            SigningRequest(
                "R-2", KEY_B, MESSAGE_DIGEST, (), "ops.bot", "Zahlung f\u00fcr Lieferant \u2014 5 \u20ac \U0001f600",
                T0, T0 + 3_600_000, 1, digest,
            ),
        ),
        (  # issue 16: a Schnorr key's request (tag signing-request-v2): digest = SHA-256 of the message
            "ed25519-message",
            SigningRequest(
                "sol-7", KEY_B, hashlib.sha256(b"solana transaction message").digest(), (), "req-1", "Solana transfer",
                T0, T0 + 600_000, 1, digest, scheme="ed25519",
            ),
        ),
        (  # issue 16: a Taproot key-path request committing to a script tree's Merkle root
            "bip340-taproot-root",
            SigningRequest(
                "tr-1", KEY_B, MESSAGE_DIGEST, (), "req-1", "Taproot spend", T0, T0 + 600_000, 1, digest,
                scheme="schnorr-secp256k1-bip340", taproot_root=bytes(range(32)),
            ),
        ),
    ]


# --- raw field builders (independent of governance.encoding, for negative vectors) ----------


def _field(data: bytes) -> bytes:
    return struct.pack(">Q", len(data)) + data


def _tag(name: str) -> bytes:
    return _field(domain_tag(name).encode("ascii"))


def _uint(n: int) -> bytes:
    return _field(struct.pack(">Q", n))


def _count(n: int) -> bytes:
    return struct.pack(">I", n)


def _text(s: str) -> bytes:
    return _field(s.encode("utf-8"))


def _members(items: Sequence[tuple[str, bytes]]) -> bytes:
    return _count(len(items)) + b"".join(_text(n) + _field(k) for n, k in items)


def _policy_raw(
    *,
    version: int = 1,
    approvers: Sequence[tuple[str, bytes]] | None = None,
    quorum: int = 1,
    requesters: Sequence[str] = ("req-1",),
    ttl: int = 600,
    rate: tuple[int, int] = (5, 60),
) -> bytes:
    members = [("alice", _public("alice"))] if approvers is None else approvers
    return (
        _tag("key-policy") + _uint(version) + _members(members) + _uint(quorum)
        + _count(len(requesters)) + b"".join(_text(r) for r in requesters)
        + _uint(ttl) + _uint(rate[0]) + _uint(rate[1])
    )


def _request_raw(
    *,
    request_id: str = "req_0001",
    path: tuple[int, ...] = (0,),
    description: bytes = b"hello",
    expires: int = T0 + 1000,
    created_field: bytes | None = None,
) -> bytes:
    """A SigningRequest encoding (under the default policy v1) with the given fields, built by hand."""
    return (
        _tag("signing-request") + _text(request_id) + _field(KEY_B) + _field(MESSAGE_DIGEST)
        + _count(len(path)) + b"".join(_uint(i) for i in path)
        + _text("req-1") + _field(description) + (_uint(T0) if created_field is None else created_field)
        + _uint(expires) + _uint(1) + _field(_default_policy().digest())
    )


# --- JSON helpers -----------------------------------------------------------------------------


def _sig(signer: str, message: bytes, signature: bytes) -> dict[str, object]:
    return {"signer": signer, "public_key": _public(signer).hex(), "message": message.hex(), "signature": signature.hex()}


def _scope_json(scope: bytes) -> str:
    return "default" if scope == DEFAULT_SCOPE else scope.hex()


def head_to_json(h: PolicyHead) -> dict[str, object]:
    return {"scope": _scope_json(h.scope), "version": h.version, "digest": h.digest.hex()}


def attestation_to_json(a: PolicyAttestation) -> dict[str, object]:
    return {
        "governance_root": a.governance_root.hex(),
        "issued_at_ms": a.issued_at_ms,
        "admin": a.admin,
        "heads": [head_to_json(h) for h in a.heads],
    }


def reservation_to_json(r: Reservation) -> dict[str, object]:
    return {
        "governance_root": r.governance_root.hex(),
        "key_id": r.key_id.hex(),
        "request_id": r.request_id,
        "request_digest": r.request_digest.hex(),
        "attempt": r.attempt,
        "signers": list(r.signers),
        "session_id": r.session_id.hex(),
    }


def _file(description: str, body: Mapping[str, object]) -> dict[str, object]:
    return {"spec": SPEC, "generator": GENERATOR, "keys": "keys.json", "description": description, **body}


# --- the vector files -------------------------------------------------------------------------


def keys_file() -> dict[str, object]:
    return {
        "spec": SPEC,
        "generator": GENERATOR,
        "description": "FIXED TEST KEYS, public knowledge: never use them for anything real. Ed25519 (RFC 8032): "
        "'seed' is the 32-byte private key, 'public_key' the 32-byte encoded public key.",
        "keys": [
            {"name": n, "role": role, "seed": (bytes([b]) * 32).hex(), "public_key": _public(n).hex()}
            for n, (role, b) in KEY_SEEDS.items()
        ],
    }


def admin_set_file() -> dict[str, object]:
    a = _admin_set()
    return _file(
        "AdminSet (section 5.1): the governance root; 'digest' = SHA-256(encoding) is the governance_root "
        "that policy changes, attestations and reservations name.",
        {"vectors": [{"name": "three-admins-quorum-2", "fields": a.to_dict(), "encoding": a.encode().hex(), "digest": a.digest().hex()}]},
    )


def key_policy_file() -> dict[str, object]:
    out = []
    for name, p in (("default-v1", _default_policy()), ("key-a-v1", _key_a_policy(1)), ("key-a-v2-frozen", _key_a_policy(2))):
        out.append({"name": name, "fields": p.to_dict(), "encoding": p.encode().hex(), "digest": p.digest().hex()})
    return _file(
        "KeyPolicy (section 5.2); 'digest' = SHA-256(encoding), named by policy changes, heads and signing requests.",
        {"vectors": out},
    )


def _changes() -> list[tuple[str, PolicyChange, tuple[str, ...]]]:
    root = _admin_set().digest()
    return [
        ("default-v1-first", PolicyChange(DEFAULT_SCOPE, _default_policy(), None, root), ("ada", "bob")),
        ("key-a-v2-replaces-v1", PolicyChange(KEY_A, _key_a_policy(2), _key_a_policy(1).digest(), root), ("cyd", "bob")),
    ]


def policy_change_file() -> dict[str, object]:
    out = []
    for name, change, admins in _changes():
        sigs = [sign_policy_change(change, a, _private(a)) for a in admins]
        signed = SignedPolicyChange(change, tuple(sigs))
        out.append({
            "name": name,
            "fields": change.to_dict(),
            "encoding": change.encode().hex(),
            "digest": change.digest().hex(),
            "proposal_id": change.digest()[:16].hex(),
            "admin_signatures": [_sig(s.admin, change.encode(), s.signature) for s in sigs],
            "signed_change": {"fields": signed.to_dict(), "encoding": signed.to_bytes().hex()},
        })
    change = _changes()[0][1]
    other = _changes()[1][1]
    wrong = sign_policy_change(other, "ada", _private("ada"))
    invalid = [
        {
            "name": "signature-over-another-change",
            "signed_change": SignedPolicyChange(change, (wrong, sign_policy_change(change, "bob", _private("bob")))).to_bytes().hex(),
            "reason": "signatures[0] (ada) was made over the key-a change, not this one: verification MUST fail",
        },
        {
            "name": "quorum-counts-distinct-admins",
            "signed_change": SignedPolicyChange(
                change, (sign_policy_change(change, "ada", _private("ada")),) * 2
            ).to_bytes().hex(),
            "reason": "the same admin twice counts once: 1 distinct admin, quorum 2",
        },
    ]
    return _file(
        "PolicyChange (5.3), its admin signatures (Ed25519 over the PolicyChange encoding) and the SignedPolicyChange "
        "(5.4) that carries them. Verify against admin-set.json; 'current' is absent for default-v1-first and "
        "key-policy.json key-a-v1 for key-a-v2-replaces-v1.",
        {"vectors": out, "invalid": invalid},
    )


def signing_request_file() -> dict[str, object]:
    out = []
    for name, r in _requests():
        out.append({"name": name, "fields": r.to_dict(), "encoding": r.encode().hex(), "request_digest": r.request_digest().hex()})
    return _file(
        "SigningRequest (5.5); 'request_digest' = SHA-256(encoding). Both are made under key-policy.json default-v1. "
        f"The second description is {len(_requests()[1][1].description)} Unicode code points, 30 UTF-16 units "
        "(its last is outside the BMP): DISPLAY(1024) counts code points.",
        {"vectors": out},
    )


def approval_file() -> dict[str, object]:
    name, req = _requests()[0]
    decisions = (("alice", Decision.APPROVE), ("carol", Decision.REJECT), ("bert", Decision.APPROVE))
    approvals = [sign_approval(req, a, _private(a), d) for a, d in decisions]
    items = []
    for a in approvals:
        message = _approval_message(req, a.approver, a.decision)
        items.append({
            "fields": {"approver": a.approver, "decision": a.decision.value, "signature": a.signature.hex()},
            "decision_code": 1 if a.decision is Decision.APPROVE else 2,
            "signature": _sig(a.approver, message, a.signature),
        })
    bundle = ApprovalBundle(req, tuple(approvals))
    alice = approvals[0]
    invalid = [
        {
            "name": "re-attributed",
            "approval": {"approver": "bert", "decision": "approve", "signature": alice.signature.hex()},
            "reason": "alice's signature presented as bert's: the approver name is inside the signed message",
        },
        {
            "name": "decision-flipped",
            "approval": {"approver": "alice", "decision": "reject", "signature": alice.signature.hex()},
            "reason": "an APPROVE signature presented as a REJECT: the decision code is inside the signed message",
        },
    ]
    return _file(
        f"Approval messages (5.6) over signing-request.json '{name}', and the ApprovalBundle (5.7) that carries "
        "them to the nodes; verify under key-policy.json default-v1 (approvers alice, bert, carol; quorum 2: "
        "'approved').",
        {
            "request": name,
            "approvals": items,
            "bundle": {"fields": bundle.to_dict(), "encoding": bundle.to_bytes().hex()},
            "invalid": invalid,
        },
    )


def _approval_message(req: SigningRequest, approver: str, decision: Decision) -> bytes:
    code = 1 if decision is Decision.APPROVE else 2
    return Encoder(domain_tag("approval")).text(approver).uint(code).raw(req.encode()).finish()


def _attestation() -> PolicyAttestation:
    heads = [
        PolicyHead(DEFAULT_SCOPE, 1, _default_policy().digest()),
        PolicyHead(KEY_A, 2, _key_a_policy(2).digest()),
    ]
    return PolicyAttestation.build(_admin_set().digest(), T0 + 5000, "cyd", heads)


def attestation_file() -> dict[str, object]:
    att = _attestation()
    signed = sign_attestation(att, _private("cyd"))
    heads = [{"fields": head_to_json(h), "encoding": h.encode().hex()} for h in att.heads]
    return _file(
        "PolicyHead (5.8), PolicyAttestation (5.9) by admin cyd, and SignedPolicyAttestation (5.10). Heads are "
        "sorted by scope bytes: key-a (0x2b...) before 'default' (0x64...).",
        {
            "heads": heads,
            "attestation": {"fields": attestation_to_json(att), "encoding": att.encode().hex(), "digest": att.digest().hex()},
            "signature": _sig("cyd", att.encode(), signed.signature),
            "signed_attestation": {"encoding": signed.to_bytes().hex()},
            "invalid": [
                {
                    "name": "signed-by-another-admin",
                    "signed_attestation": sign_attestation(att, _private("bob")).to_bytes().hex(),
                    "reason": "names admin cyd but is signed with bob's key: the signer MUST be the admin it names",
                },
            ],
        },
    )


def _reservation() -> Reservation:
    _, req = _requests()[0]
    return Reservation(_admin_set().digest(), KEY_B, req.request_id, req.request_digest(), 1, (1, 3), SESSION_ID)


def reservation_file() -> dict[str, object]:
    res = _reservation()
    receipts = []
    for node, index in (("node-1", 1), ("node-3", 3)):
        r = sign_reservation(res, index, _private(node))
        message = Encoder(domain_tag("sign-reservation-receipt-message")).raw(res.encode()).uint(index).finish()
        receipts.append({
            "fields": {"reservation": reservation_to_json(res), "reserver": index, "signature": r.signature.hex()},
            "signature": _sig(node, message, r.signature),
            "encoding": r.to_bytes().hex(),
        })
    forged = sign_reservation(res, 1, _private("node-1"))
    invalid = [
        {
            "name": "reserver-relabelled",
            "receipt": ReservationReceipt(res, 2, forged.signature).to_bytes().hex(),
            "reason": "node 1's signature presented as node 2's receipt: the reserver index is inside the signed message",
        },
        {
            "name": "another-attempt",
            "receipt": sign_reservation(
                Reservation(res.governance_root, res.key_id, res.request_id, res.request_digest, 2, res.signers, res.session_id),
                2, _private("node-2"),
            ).to_bytes().hex(),
            "reason": "a valid receipt, but for attempt 2: it does not grant the expected reservation (attempt 1)",
        },
    ]
    return _file(
        "Reservation (5.11) of attempt 1 of signing-request.json 'basic' by signers {1, 3}, and ReservationReceipts "
        "(5.12) from nodes 1 and 3 (roster index i has key node-i). A roster of 3 needs 2 receipts.",
        {
            "reservation": {"fields": reservation_to_json(res), "encoding": res.encode().hex()},
            "receipts": receipts,
            "invalid": invalid,
        },
    )


def _details_encoding(details: Mapping[str, str | int | bool]) -> bytes:
    enc = Encoder(domain_tag("audit-details")).count(len(details))
    for key in sorted(details):
        v = details[key]
        enc.text(key)
        if isinstance(v, bool):
            enc.uint(3).flag(v)
        elif isinstance(v, int):
            enc.uint(2).sint(v)
        else:
            enc.uint(1).text(v)
    return enc.finish()


AuditFields = tuple[int, str, str, str, str, dict[str, str | int | bool]]


def _audit_entries() -> list[AuditFields]:
    return [
        (T0, "coordinator", "policy.install", "", "installed", {"scope": "default", "version": 1}),
        (T0 + 1, "alice", "sign.decide", "req_0001", "", {}),
        (
            T0 + 2, "node-1", "sign", "req_0001", "denied",
            {"attempt": 1, "delta": -5, "fresh": True, "stale": False, "note": "tab\there \"q\" \\ \u00fc \x01"},
        ),
    ]


def audit_file() -> dict[str, object]:
    component, key = "node-1", _private("node-1")
    pk = _public("node-1")
    genesis = hashlib.sha256(Encoder(domain_tag("audit-genesis")).text(component).raw(pk).finish()).digest()
    prev = genesis
    out = []
    for seq, (ts, actor, action, request_id, outcome, details) in enumerate(_audit_entries(), start=1):
        details_bytes = _details_encoding(details)
        preimage = (
            Encoder(domain_tag("audit-entry")).uint(seq).uint(ts).text(actor).text(action).text(request_id)
            .text(outcome).raw(details_bytes).raw(prev).finish()
        )
        entry_hash = hashlib.sha256(preimage).digest()
        message = Encoder(domain_tag("audit-signature")).raw(entry_hash).finish()
        out.append({
            "fields": {
                "seq": seq, "timestamp_ms": ts, "actor": actor, "action": action, "request_id": request_id,
                "outcome": outcome, "details": details,
            },
            "details_json": json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
            "details_encoding": details_bytes.hex(),
            "prev_hash": prev.hex(),
            "entry_preimage": preimage.hex(),
            "entry_hash": entry_hash.hex(),
            "signature": _sig(component, message, key.sign(message)),
        })
        prev = entry_hash
    spaced = dict(out[0], details_json=json.dumps(_audit_entries()[0][5], sort_keys=True))
    foreign_message = bytes.fromhex(out[2]["signature"]["message"])  # type: ignore[index]
    foreign = dict(out[2], signature=_sig("node-2", foreign_message, _private("node-2").sign(foreign_message)))
    invalid = [
        {
            "name": "details-json-not-canonical", "entries": [spaced, *out[1:]], "first_broken": 1,
            "reason": "entry 1's details_json has spaces: the same values, but not the canonical JSON text",
        },
        {
            "name": "entry-dropped", "entries": [out[0], out[2]], "first_broken": 2,
            "reason": "entry 2 is missing (the next entry has seq 3)",
        },
        {
            "name": "signed-by-another-key", "entries": [*out[:2], foreign], "first_broken": 3,
            "reason": "entry 3 is signed with node-2's key, not the component's",
        },
    ]
    return _file(
        "Audit entries (section 6) of component 'node-1', signed with key node-1; verify the chain from 'genesis'. "
        "Each 'invalid' chain MUST fail verification at entry 'first_broken'.",
        {"component": component, "public_key": pk.hex(), "genesis": genesis.hex(), "entries": out, "invalid": invalid},
    )


def negative_file() -> dict[str, object]:
    good_request = SigningRequest(
        "req_0001", KEY_B, MESSAGE_DIGEST, (0,), "req-1", "hello", T0, T0 + 1000, 1, _default_policy().digest()
    )
    assert _request_raw() == good_request.encode(), "negative-vector builder out of step with the encoder"
    assert _policy_raw() == _key_a_policy(1).encode(), "negative-vector builder out of step with the encoder"
    root = _admin_set().digest()
    policy_raw = _policy_raw()
    identity_point = bytes([1]) + bytes(31)
    pk = {n: _public(n) for n in ("alice", "bert", "ada", "bob")}
    change_head = _tag("policy-change") + _field(root) + _field(DEFAULT_SCOPE) + _field(policy_raw)
    approve = sign_approval(good_request, "alice", _private("alice"), Decision.APPROVE)
    res = _reservation()
    res_head = _tag("sign-reservation") + _field(res.governance_root) + _field(res.key_id) + _text(res.request_id)
    res_head += _field(res.request_digest)
    att_head = _tag("policy-attestation") + _field(root) + _uint(T0) + _text("ada")

    def head(scope: bytes, version: int = 1) -> bytes:
        return _field(_tag("policy-head") + _field(scope) + _uint(version) + _field(bytes(32)))

    cases: list[tuple[str, str, bytes, str]] = [
        ("signing-request", "trailing-byte", _request_raw() + b"\x00", "one byte after the last field"),
        ("signing-request", "truncated", _request_raw()[:-1], "the last field is one byte shorter than its length prefix"),
        (
            "signing-request", "length-beyond-input",
            _request_raw()[:-40] + struct.pack(">Q", 2**64 - 1) + bytes(32),
            "policy_digest's length prefix (2^64-1) exceeds the remaining input",
        ),
        (
            "signing-request", "wrong-tag-version",
            _request_raw().replace(b"MPCNET/v1/gov/signing-request", b"MPCNET/v2/gov/signing-request", 1),
            "domain tag MPCNET/v2/gov/signing-request is not this object's tag",
        ),
        (
            "signing-request", "another-objects-tag", _key_a_policy(1).encode(),
            "a KeyPolicy encoding is not a SigningRequest (tag MPCNET/v1/gov/key-policy)",
        ),
        (
            "signing-request", "uint-not-8-bytes", _request_raw(created_field=_field(struct.pack(">Q", T0)[1:])),
            "created_at_ms is 7 bytes: a uint field MUST be exactly 8 bytes",
        ),
        (
            "signing-request", "invalid-utf8", _request_raw(description=b"\xc0\xaf"),
            "description is not valid UTF-8 (overlong encoding of '/')",
        ),
        (
            "signing-request", "surrogate-utf8", _request_raw(description=b"\xed\xa0\x80"),
            "description encodes a UTF-16 surrogate (U+D800): not valid UTF-8",
        ),
        (
            "signing-request", "bidi-override", _request_raw(description="pay \u202eevil".encode()),
            "description contains U+202E (a format character)",
        ),
        (
            "signing-request", "byte-order-mark", _request_raw(description="\ufeffhello".encode()),
            "description starts with U+FEFF (a format character; decoders MUST NOT strip it)",
        ),
        (
            "signing-request", "description-too-long", _request_raw(description=b"a" * 1025),
            "description is 1025 characters (at most 1024)",
        ),
        (
            "signing-request", "expires-not-after-created", _request_raw(expires=T0),
            "expires_at_ms must be greater than created_at_ms",
        ),
        ("signing-request", "bad-request-id", _request_raw(request_id="req 1"), "request_id contains a space"),
        (
            "signing-request", "path-index-too-large", _request_raw(path=(2**32,)),
            "derivation_path[0] = 2^32 exceeds 2^32-1",
        ),
        (
            "key-policy", "requesters-unsorted", _policy_raw(requesters=("req-2", "req-1")),
            "requesters must be sorted (bytewise) and unique",
        ),
        ("key-policy", "requesters-duplicate", _policy_raw(requesters=("req-1", "req-1")), "a requester is listed twice"),
        (
            "key-policy", "approvers-unsorted",
            _policy_raw(approvers=[("bert", pk["bert"]), ("alice", pk["alice"])]),
            "approvers must be sorted by name (bytewise) and unique",
        ),
        (
            "key-policy", "approvers-same-key",
            _policy_raw(approvers=[("alice", pk["alice"]), ("bert", pk["alice"])]),
            "two approvers with the same public key",
        ),
        ("key-policy", "quorum-above-approvers", _policy_raw(quorum=2), "approval_quorum 2 with one approver"),
        ("key-policy", "version-zero", _policy_raw(version=0), "version must be at least 1"),
        (
            "key-policy", "count-above-maximum", _tag("key-policy") + _uint(1) + _count(257),
            "257 approvers announced (at most 256); rejected before reading any item",
        ),
        (
            "key-policy", "name-not-allowed", _policy_raw(approvers=[(".alice", pk["alice"])]),
            "an approver name must start with a letter or digit",
        ),
        (
            "admin-set", "small-order-key",
            _tag("admin-set") + _field(CLUSTER_ID) + _members([("ada", pk["ada"]), ("bob", identity_point)]) + _uint(1),
            "bob's key is the identity point (small order: it would accept forged signatures)",
        ),
        (
            "admin-set", "small-order-key-non-canonical",
            _tag("admin-set") + _field(CLUSTER_ID)
            + _members([("ada", pk["ada"]), ("bob", (2**255 - 18).to_bytes(32, "little"))]) + _uint(1),
            "bob's key encodes y = p + 1, a non-canonical encoding of the identity point (y mod p = 1)",
        ),
        (
            "admin-set", "public-key-31-bytes",
            _tag("admin-set") + _field(CLUSTER_ID) + _members([("ada", pk["ada"][:31])]) + _uint(1),
            "a public key must be exactly 32 bytes",
        ),
        (
            "admin-set", "quorum-zero",
            _tag("admin-set") + _field(CLUSTER_ID) + _members([("ada", pk["ada"])]) + _uint(0),
            "quorum must be in 1..number of admins",
        ),
        (
            "policy-change", "optional-count-2", change_head + _count(2) + _field(bytes(32)) + _field(bytes(32)),
            "previous_digest is optional: its count MUST be 0 or 1",
        ),
        (
            "policy-change", "scope-31-bytes",
            _tag("policy-change") + _field(root) + _field(bytes(31)) + _field(policy_raw) + _count(0),
            "scope must be 'default' or a 32-byte key id",
        ),
        (
            "policy-change", "nested-trailing-byte",
            _tag("policy-change") + _field(root) + _field(DEFAULT_SCOPE) + _field(policy_raw + b"\x00") + _count(0),
            "the nested KeyPolicy has a trailing byte: nested encodings are decoded strictly too",
        ),
        (
            "signed-policy-change", "signature-63-bytes",
            _tag("signed-policy-change") + _field(change_head + _count(0)) + _count(1) + _text("ada") + _field(bytes(63)),
            "an Ed25519 signature is exactly 64 bytes",
        ),
        (
            "approval-bundle", "decision-code-3",
            _tag("approval-bundle") + _field(good_request.encode()) + _count(1) + _text("alice") + _uint(3)
            + _field(approve.signature),
            "decision code 3 is unknown (1 = approve, 2 = reject)",
        ),
        (
            "policy-attestation", "heads-unsorted",
            att_head + _count(2) + head(KEY_B) + head(DEFAULT_SCOPE),
            "heads must be sorted by scope bytes: 0x7e... after 'default'",
        ),
        (
            "policy-attestation", "no-default-head", att_head + _count(1) + head(KEY_A),
            "an attestation must name the default scope's head",
        ),
        (
            "reservation", "signers-not-increasing",
            res_head + _uint(1) + _count(2) + _uint(3) + _uint(1) + _field(res.session_id),
            "signers must be distinct and in increasing order",
        ),
        (
            "reservation", "attempt-4", res_head + _uint(4) + _count(1) + _uint(1) + _field(res.session_id),
            "attempt must be in 1..3",
        ),
        (
            "reservation-receipt", "reserver-zero",
            _tag("sign-reservation-receipt") + _field(res.encode()) + _uint(0) + _field(bytes(64)),
            "reserver (a roster index) must be in 1..65535",
        ),
    ]
    return _file(
        "Encodings a decoder MUST reject (spec section 7); 'object' names the decoder to feed the bytes to; "
        "'python_error_field' is the field the Python decoder's GovernanceError names (a hint, not normative).",
        {
            "negative": [
                {"object": o, "name": n, "encoding": b.hex(), "reason": why, "python_error_field": _error_field(o, b)}
                for o, n, b, why in cases
            ]
        },
    )


# --- roster (5.13-5.16) -----------------------------------------------------------------------


def _x25519(seed_byte: int) -> bytes:
    """The X25519 public key of the private key ``bytes([seed_byte]) * 32`` (RFC 7748)."""
    key = X25519PrivateKey.from_private_bytes(bytes([seed_byte]) * 32)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _node(index: int, identity: str, enc_seed: int) -> RosterEntry:
    return RosterEntry(
        index, f"node-{index}", _public(identity), _x25519(enc_seed),
        hashlib.sha256(f"node-{index} certificate".encode()).digest(), f"node-{index}.example:{7000 + index}",
    )


def _roster_chain() -> list[tuple[str, Roster, tuple[str, ...]]]:
    r1 = Roster(1, 0, tuple(_node(i, f"node-{i}", 0x30 + i) for i in (1, 2, 3)))
    r2 = rotate_keys(r1, 1, identity_key=_public("node-1-rotated"), encryption_key=_x25519(0x41))
    r3 = revoke_node(r2, 3)
    r4 = add_node(r3, _node(4, "node-4", 0x34))
    return [("first", r1, ("ada", "bob")), ("rotate-node-1", r2, ("bob", "cyd")),
            ("revoke-node-3", r3, ("ada", "cyd")), ("add-node-4", r4, ("ada", "bob"))]


def _signed_roster(change: RosterChange, admins: Sequence[str]) -> SignedRosterChange:
    return SignedRosterChange(change, tuple(sign_roster_change(change, a, _private(a)) for a in admins))


KEY_ID_A = bytes.fromhex("aa" * 32)


def _key_operations() -> list[tuple[str, KeyOperation, tuple[str, ...]]]:
    """A roster-implied reshare after roster version 4 of roster.json (nodes 1, 2, 4 active; node 3
    revoked), unsigned; and an admin-signed refresh of the resulting committee."""
    root = _admin_set().digest()
    pk = bytes.fromhex("02" + "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")  # the generator: fixed data only
    cc = bytes(range(32))
    reshare = KeyOperation(root, bytes(16), KeyOpKind.RESHARE, KEY_ID_A, pk, cc, 0, 2, (1, 2, 3), 2, (1, 2, 4), 4, "")
    refresh = KeyOperation(
        root, bytes([1] * 16), KeyOpKind.REFRESH, KEY_ID_A, pk, cc, 1, 2, (1, 2, 4), 2, (1, 2, 4), 4, "quarterly refresh"
    )
    # issue 16: a FROST key's operation (tag key-operation-v2): its group key (here the RFC 8032
    # test 1 Ed25519 public key: fixed data only), no chain code, the scheme appended
    ed_pk = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    frost = KeyOperation(
        root, bytes([2] * 16), KeyOpKind.REFRESH, KEY_ID_A, ed_pk, b"", 1, 2, (1, 2, 4), 2, (1, 2, 4), 4, "ed25519 refresh",
        scheme="ed25519",
    )
    return [("roster-implied-reshare", reshare, ()), ("admin-refresh", refresh, ("ada", "cyd")),
            ("admin-refresh-ed25519-key", frost, ("ada", "cyd"))]


def key_operation_file() -> dict[str, object]:
    ops = []
    for name, op, admins in _key_operations():
        signed = SignedKeyOperation(op, tuple(sign_key_operation(op, a, _private(a)) for a in admins))
        ops.append({
            "name": name,
            "operation": {"fields": op.to_dict(), "encoding": op.encode().hex(), "digest": op.digest().hex()},
            "admin_signatures": [_sig(s.admin, op.encode(), s.signature) for s in signed.signatures],
            "signed_operation": {"fields": signed.to_dict(), "encoding": signed.to_bytes().hex()},
        })
    op = _key_operations()[0][1]
    holders = {1: "node-1-rotated", 2: "node-2", 4: "node-4"}
    receipts = []
    for holder, key in holders.items():
        body = EpochReceipt(op.governance_root, op.key_id, op.digest(), bytes([7] * 32), 1, 2, (1, 2, 4), bytes([9] * 32), holder)
        r = sign_epoch_receipt(body, _private(key))
        receipts.append({
            "holder": holder, "signer": key, "message": r.message().hex(), "signature": r.signature.hex(), "encoding": r.to_bytes().hex(),
        })
    return _file(
        "Key operations (5.17-5.19): a roster-implied reshare (no signatures; valid after roster version 4 of "
        "roster.json, whose active nodes are 1, 2 and 4), an admin-signed refresh and an admin-signed refresh of an "
        "ed25519 (FROST) key (tag key-operation-v2: group key, empty chain code, scheme appended); then the commit "
        "certificate of the reshare: one EpochReceipt per new-committee member (session id 07*32, state digest "
        "09*32), signed with the holder's identity key in that roster (node 1's rotated key). The public key is "
        "the secp256k1 generator: these are encodings, not a real key.",
        {"operations": ops, "receipts": receipts},
    )


ROSTER_DECODERS: dict[str, Callable[[bytes], object]] = {
    "roster-entry": RosterEntry.from_bytes,
    "roster": Roster.from_bytes,
    "roster-change": RosterChange.from_bytes,
    "signed-roster-change": SignedRosterChange.from_bytes,
}


def _roster_error_field(kind: str, data: bytes) -> str:
    try:
        ROSTER_DECODERS[kind](data)
    except GovernanceError as e:
        return e.field
    raise AssertionError(f"negative vector for {kind} is accepted by the Python decoder")


def roster_file() -> dict[str, object]:
    root = _admin_set().digest()
    out = []
    prev: Roster | None = None
    changes: list[RosterChange] = []
    for name, roster, admins in _roster_chain():
        change = RosterChange(roster, None if prev is None else prev.digest(), root)
        signed = _signed_roster(change, admins)
        out.append({
            "name": name,
            "roster": {"fields": roster.to_dict(), "encoding": roster.encode().hex(), "digest": roster.digest().hex()},
            "entries": [e.encode().hex() for e in roster.entries],
            "change": {"fields": change.to_dict(), "encoding": change.encode().hex(), "digest": change.digest().hex()},
            "admin_signatures": [_sig(s.admin, change.encode(), s.signature) for s in signed.signatures],
            "signed_change": {"fields": signed.to_dict(), "encoding": signed.to_bytes().hex()},
        })
        changes.append(change)
        prev = roster
    chain = _roster_chain()
    r1, r3 = chain[0][1], chain[2][1]
    reuse = Roster(4, 3, tuple(_node(3, "node-4", 0x34) if e.index == 3 else e for e in r3.entries))
    invalid = [
        {
            "name": "one-admin-of-quorum-2", "after": None,
            "signed_change": _signed_roster(changes[0], ("ada",)).to_bytes().hex(),
            "reason": "1 distinct admin signed, the admin set's quorum is 2",
        },
        {
            "name": "not-chained", "after": "first",
            "signed_change": _signed_roster(RosterChange(chain[1][1], bytes(32), root), ("ada", "bob")).to_bytes().hex(),
            "reason": "previous_digest is not the digest of roster 'first'",
        },
        {
            "name": "revoked-index-reused", "after": "revoke-node-3",
            "signed_change": _signed_roster(RosterChange(reuse, r3.digest(), root), ("ada", "bob")).to_bytes().hex(),
            "reason": "node 3 is revoked: its entry may never change and its index is never reused",
        },
    ]
    e1 = r1.entries[0]
    entry_head = (
        _tag("roster-entry") + _uint(1) + _text("node-1") + _field(e1.identity_key)
    )
    entry_tail = _field(e1.tls_fingerprint) + _text(e1.endpoint) + _uint(1) + _uint(1)
    roster_head = _tag("roster") + _uint(1) + _uint(0)
    e2 = r1.entries[1].encode()
    cases = [
        ("roster-entry", "encryption-key-zero", entry_head + _field(bytes(32)) + entry_tail,
         "an all-zero X25519 key (u = 0, low order) is refused"),
        ("roster-entry", "encryption-key-order-8",
         entry_head + _field((325606250916557431795983626356110631294008115727848805560023387167927233504).to_bytes(32, "little"))
         + entry_tail, "an X25519 point of order 8 is refused"),
        ("roster-entry", "identity-key-small-order",
         _tag("roster-entry") + _uint(1) + _text("node-1") + _field((1).to_bytes(32, "little"))
         + _field(e1.encryption_key) + entry_tail, "a small-order Ed25519 identity key is refused"),
        ("roster-entry", "status-3",
         entry_head + _field(e1.encryption_key) + _field(e1.tls_fingerprint) + _text(e1.endpoint) + _uint(3) + _uint(1),
         "status must be 1 (active) or 2 (revoked)"),
        ("roster-entry", "endpoint-no-port",
         entry_head + _field(e1.encryption_key) + _field(e1.tls_fingerprint) + _text("node-1.example") + _uint(1) + _uint(1),
         "endpoint must be HOST:PORT"),
        ("roster", "entries-unsorted", roster_head + _count(2) + _field(e2) + _field(e1.encode()),
         "entries must be in strictly increasing index order"),
        ("roster", "no-entries", roster_head + _count(0), "a roster has 1..255 entries"),
        ("roster-change", "nested-trailing-byte",
         _tag("roster-change") + _field(root) + _field(r1.encode() + b"\x00") + _count(0),
         "the nested Roster has a trailing byte"),
    ]
    negative = [
        {"object": o, "name": n, "encoding": b.hex(), "reason": why, "python_error_field": _roster_error_field(o, b)}
        for o, n, b, why in cases
    ]
    return _file(
        "Node roster (5.13-5.16): a chain of four RosterChanges (first roster of nodes 1-3; node 1's identity "
        "and encryption keys rotated; node 3 revoked; node 4 added), each with its roster, entry encodings, "
        "admin signatures and SignedRosterChange; verify against admin-set.json, each change after the "
        "previous one's roster. X25519 encryption keys are the public keys of the private keys 0x31*32, "
        "0x32*32, ... (0x41*32 after node 1's rotation); TLS fingerprints are SHA-256('node-N certificate'). "
        "'invalid': signed changes whose verification after the named roster MUST fail; 'negative': "
        "encodings a decoder MUST reject (Python only: the Node example does not read this file).",
        {"chain": out, "invalid": invalid, "negative": negative},
    )


# --- recovery (5.21-5.32) ---------------------------------------------------------------------

RECOVERY_PK = bytes.fromhex("02" + "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
RECOVERY_CC = bytes(range(32))
RECOVERY_NODE_KEYS = {1: "node-1-rotated", 2: "node-2", 4: "node-4"}  # roster version 4 of roster.json


def _officers() -> tuple[Officer, ...]:
    return tuple(Officer(f"officer{j}", _x25519(0x50 + j)) for j in (1, 2, 3))


def _recovery_configs() -> list[tuple[str, RecoveryConfig, tuple[str, ...]]]:
    return [
        ("first", RecoveryConfig(1, _officers(), 2, 3, 0), ("ada", "bob")),
        ("drill-every-30-days", RecoveryConfig(2, _officers(), 2, 3, 30 * 86400), ("bob", "cyd")),
    ]


def _signed_config(change: RecoveryConfigChange, admins: Sequence[str]) -> SignedRecoveryConfigChange:
    return SignedRecoveryConfigChange(change, tuple(sign_recovery_config_change(change, a, _private(a)) for a in admins))


def _fake_point(n: int) -> bytes:
    return bytes([2 + n % 2]) + hashlib.sha256(b"mpcnet test vector point %d" % n).digest()


def _fake_age_file(n: int) -> bytes:
    return AGE_HEADER + b"-> X25519 " + hashlib.sha256(b"mpcnet test vector age %d" % n).hexdigest().encode() + b"\n---\n" + bytes(48)


def _backup_key() -> BackupKey:
    return BackupKey(KEY_ID_A, RECOVERY_PK, RECOVERY_CC, "treasury", 2, 1, (1, 2, 4), tuple(_fake_point(i) for i in (1, 2, 4)))


def _frost_backup_key() -> BackupKey:
    """An ed25519 key's record (BackupKey v2, issue 16): 32-byte stand-ins for the points, no chain code."""
    def ed(n: int) -> bytes:
        return hashlib.sha256(b"mpcnet test vector ed25519 point %d" % n).digest()

    return BackupKey(bytes([0xBB] * 32), ed(0), b"", "solana", 2, 0, (1, 2, 4), tuple(ed(i) for i in (1, 2, 4)), "ed25519")


def _bundle() -> BackupBundle:
    root = _admin_set().digest()
    key = _backup_key()
    config = _recovery_configs()[0][1]
    signed_config = _signed_config(RecoveryConfigChange(root, None, config), ("ada", "bob"))
    parts = []
    for s, node in enumerate(key.committee, start=1):
        part = BackupPart(
            root, key.digest(), KEY_ID_A, key.epoch, s, node, 4, config.version, config.digest(),
            (key.public_shares[s - 1], _fake_point(100 + node)), tuple(_fake_age_file(10 * node + j) for j in (1, 2, 3)),
            T0 + node,
        )
        parts.append(sign_backup_part(part, _private(RECOVERY_NODE_KEYS[node])))
    history = []
    prev: Roster | None = None
    for _name, roster, admins in _roster_chain():
        history.append(_signed_roster(RosterChange(roster, None if prev is None else prev.digest(), root), admins))
        prev = roster
    return BackupBundle(1, root, key, signed_config, tuple(history), tuple(parts), T0 + 100)


ORDER_EXPIRES_MS = T0 + 86_400_000  # the vector orders are valid for one day after T0


def _orders() -> list[tuple[str, RecoveryOrder, tuple[str, ...]]]:
    root = _admin_set().digest()
    digest = _bundle().digest()
    follow_up = KeyOperation(
        root, bytes([2] * 16), KeyOpKind.REFRESH, KEY_ID_A, RECOVERY_PK, RECOVERY_CC, 1, 2, (1, 2, 4), 2, (1, 2, 4), 4,
        "refresh after restore",
    )
    restore = RecoveryOrder(
        root, bytes([0x0A] * 16), RecoveryOrderKind.RESTORE, KEY_ID_A, RECOVERY_PK, RECOVERY_CC, 1, digest, 1, 4,
        (RecoveryTarget(3, 4),), b"", follow_up, "node 4 lost its disk", ORDER_EXPIRES_MS,
    )
    export = RecoveryOrder(
        root, bytes([0x0B] * 16), RecoveryOrderKind.EXPORT, KEY_ID_A, RECOVERY_PK, RECOVERY_CC, 1, digest, 1, 4,
        (RecoveryTarget(1, 0), RecoveryTarget(2, 0)), _x25519(0x5F), None, "migration to another custodian",
        ORDER_EXPIRES_MS,
    )
    return [("restore", restore, ("ada", "bob")), ("export", export, ("ada", "bob", "cyd"))]


RECOVERY_DECODERS: dict[str, Callable[[bytes], object]] = {
    "recovery-config": RecoveryConfig.from_bytes,
    "signed-backup-part": SignedBackupPart.from_bytes,
    "backup-bundle": BackupBundle.from_file,
    "recovery-order": RecoveryOrder.from_bytes,
    "drill-report": DrillReport.from_bytes,
}


def _recovery_error_field(kind: str, data: bytes) -> str:
    try:
        RECOVERY_DECODERS[kind](data)
    except GovernanceError as e:
        return e.field
    raise AssertionError(f"negative vector for {kind} is accepted by the Python decoder")


def recovery_file() -> dict[str, object]:
    root = _admin_set().digest()
    configs = []
    prev: RecoveryConfig | None = None
    for name, config, admins in _recovery_configs():
        change = RecoveryConfigChange(root, None if prev is None else prev.digest(), config)
        signed = _signed_config(change, admins)
        configs.append({
            "name": name,
            "config": {"fields": config.to_dict(), "encoding": config.encode().hex(), "digest": config.digest().hex()},
            "officers": [o.encode().hex() for o in config.officers],
            "change": {"fields": change.to_dict(), "encoding": change.encode().hex(), "digest": change.digest().hex()},
            "admin_signatures": [_sig(s.admin, change.encode(), s.signature) for s in signed.signatures],
            "signed_change": {"fields": signed.to_dict(), "encoding": signed.to_bytes().hex()},
        })
        prev = config
    first = _recovery_configs()[0][1]
    invalid_configs = [
        {
            "name": "export-quorum-not-above-admin-quorum", "after": None,
            "signed_change": _signed_config(
                RecoveryConfigChange(root, None, RecoveryConfig(1, _officers(), 2, 2, 0)), ("ada", "bob")
            ).to_bytes().hex(),
            "reason": "export_quorum 2 is not more than the admin quorum 2",
        },
        {
            "name": "one-admin-of-quorum-2", "after": None,
            "signed_change": _signed_config(RecoveryConfigChange(root, None, first), ("ada",)).to_bytes().hex(),
            "reason": "1 distinct admin signed, the admin set's quorum is 2",
        },
    ]
    bundle = _bundle()
    frost_key = _frost_backup_key()
    parts = []
    for sp in bundle.parts:
        node = sp.part.node
        parts.append({
            "node": node, "signer": RECOVERY_NODE_KEYS[node], "fields": sp.part.to_dict(), "encoding": sp.part.encode().hex(),
            "signature": sp.signature.hex(), "signed_part": sp.to_bytes().hex(),
        })
    value = bytes([0x11] * 32)
    piece = BackupPiece(KEY_ID_A, 1, 3, 2, 1, value)
    delivery = PieceDelivery(bytes([0x0C] * 16), PiecePurpose.RESTORE, KEY_ID_A, 1, 3, 2, bundle.digest(), value)
    orders = []
    for name, order, admins in _orders():
        signed_order = SignedRecoveryOrder(order, tuple(sign_recovery_order(order, a, _private(a)) for a in admins))
        orders.append({
            "name": name,
            "order": {"fields": order.to_dict(), "encoding": order.encode().hex(), "digest": order.digest().hex()},
            "admin_signatures": [_sig(s.admin, order.encode(), s.signature) for s in signed_order.signatures],
            "signed_order": {"fields": signed_order.to_dict(), "encoding": signed_order.to_bytes().hex()},
        })
    export = _orders()[1][1]
    restore_order, restore_admins = _orders()[0][1], _orders()[0][2]
    invalid_orders = [{
        "name": "export-with-admin-quorum-only", "now_ms": None, "error_field": "signatures",
        "signed_order": SignedRecoveryOrder(export, tuple(sign_recovery_order(export, a, _private(a)) for a in ("ada", "bob")))
        .to_bytes().hex(),
        "reason": "a break-glass export needs export_quorum (3) distinct admins; 2 signed",
    }, {
        "name": "restore-expired", "now_ms": ORDER_EXPIRES_MS, "error_field": "expires_ms",
        "signed_order": SignedRecoveryOrder(
            restore_order, tuple(sign_recovery_order(restore_order, a, _private(a)) for a in restore_admins)
        ).to_bytes().hex(),
        "reason": "a verifier whose clock reads expires_ms (or later) refuses the order",
    }]
    receipt = sign_recovery_receipt(RecoveryReceipt(bytes([0x0A] * 16), KEY_ID_A, 1, 3, 4, _fake_point(4)), _private("node-4"))
    report = sign_drill_report(
        DrillReport(bytes([0x0D] * 16), KEY_ID_A, 1, 1, 1, bundle.digest(), False, ((1, "ok"), (2, "ok"), (3, "bad-piece"))),
        _private("node-1-rotated"),
    )
    attestation = sign_epoch_attestation(
        EpochAttestation(bytes([0x0D] * 16), KEY_ID_A, 1, 2, attested_ms=1_800_000_000_000), _private("node-2")
    )
    config_head = _tag("recovery-config") + _uint(1) + _count(3) + b"".join(_field(o.encode()) for o in _officers())
    rep_tail = _field(KEY_ID_A) + _uint(1) + _uint(1) + _uint(1) + _field(bundle.digest()) + _field(b"\x00")
    body = bundle.to_file()[len(b"MPCNET-BACKUP-BUNDLE\n"):]
    restore = _orders()[0][1]
    restore_follow_up = restore.follow_up
    assert restore_follow_up is not None
    cases = [
        ("recovery-config", "quorum-1", config_head + _uint(1) + _uint(3) + _uint(0), "quorum must be 2..k"),
        ("recovery-config", "officers-repeated",
         _tag("recovery-config") + _uint(1) + _count(2) + _field(_officers()[0].encode()) * 2 + _uint(2) + _uint(3) + _uint(0),
         "officer names (and recipients) must be distinct"),
        ("backup-bundle", "format-version-2",
         b"MPCNET-BACKUP-BUNDLE\n" + _tag("backup-bundle") + _uint(2) + body[len(_tag("backup-bundle")) + 16:],
         "an unknown bundle format version is refused, naming it"),
        ("backup-bundle", "no-magic", body, "a bundle file starts with MPCNET-BACKUP-BUNDLE and a newline"),
        ("recovery-order", "expires-zero",
         restore.encode()[: -len(_uint(ORDER_EXPIRES_MS))] + _uint(0), "expires_ms is at least 1"),
        ("recovery-order", "restore-without-follow-up",
         restore.encode().replace(_count(1) + _field(restore_follow_up.encode()), _count(0)),
         "a restore order carries its follow-up key operation"),
        ("drill-report", "outcome-unknown",
         _tag("drill-report") + _field(
             _tag("drill-report-message") + _field(bytes([0x0D] * 16)) + rep_tail + _count(1) + _uint(1) + _text("fine")
         ) + _field(bytes(64)),
         "an officer outcome is one of ok, bad-piece, undecryptable, wrong-binding, duplicate, missing"),
    ]
    negative = [
        {"object": o, "name": n, "encoding": b.hex(), "reason": why, "python_error_field": _recovery_error_field(o, b)}
        for o, n, b, why in cases
    ]
    return _file(
        "Recovery (5.21-5.32): a chain of two recovery configurations (officers officer1..3 whose X25519 age "
        "recipients are the public keys of the private keys 0x51*32, 0x52*32, 0x53*32; quorum 2; export quorum 3), "
        "with admin signatures; a backup bundle of key aa*32 at epoch 1 held by nodes 1, 2, 4 (roster version 4 of "
        "roster.json; parts signed with node-1-rotated, node-2, node-4), whose public shares, commitments and age "
        "pieces are stand-ins of the right shape (not curve points, not decryptable): governance checks no "
        "elliptic-curve math; a backup piece and a piece delivery (scalar 11*32); a restore order (share 3 to node 4, "
        "with its follow-up refresh) and a break-glass export order (to the X25519 recipient of 0x5f*32), both expiring "
        "one day after T0, with their admin signatures; a recovery receipt, a drill report and an epoch attestation. "
        "'invalid_configs'/'invalid_orders' MUST fail verification (at 'now_ms' when given, naming 'error_field'); "
        "'negative' encodings MUST be rejected by the decoder (Python only).",
        {
            "configs": configs, "invalid_configs": invalid_configs,
            "backup_key": {"fields": bundle.key.to_dict(), "encoding": bundle.key.encode().hex(), "digest": bundle.key.digest().hex()},
            # issue 16: the v2 record of an ed25519 (FROST) key; stand-in points of the right length
            "backup_key_frost": {"fields": frost_key.to_dict(), "encoding": frost_key.encode().hex(), "digest": frost_key.digest().hex()},
            "parts": parts,
            "bundle": {"file": bundle.to_file().hex(), "digest": bundle.digest().hex()},
            "piece": {"encoding": piece.encode().hex()}, "delivery": {"encoding": delivery.encode().hex()},
            "orders": orders, "invalid_orders": invalid_orders,
            "receipt": {"signer": "node-4", "message": receipt.message().hex(), "encoding": receipt.to_bytes().hex()},
            "drill_report": {"signer": "node-1-rotated", "message": report.message().hex(), "encoding": report.to_bytes().hex()},
            "epoch_attestation": {
                "signer": "node-2", "fields": attestation.to_dict(), "message": attestation.message().hex(),
                "encoding": attestation.to_bytes().hex(),
            },
            "negative": negative,
        },
    )


DECODERS: dict[str, Callable[[bytes], object]] = {
    "admin-set": AdminSet.from_bytes,
    "key-policy": KeyPolicy.from_bytes,
    "policy-change": PolicyChange.from_bytes,
    "signed-policy-change": SignedPolicyChange.from_bytes,
    "signing-request": SigningRequest.from_bytes,
    "approval-bundle": ApprovalBundle.from_bytes,
    "policy-head": PolicyHead.from_bytes,
    "policy-attestation": PolicyAttestation.from_bytes,
    "signed-policy-attestation": SignedPolicyAttestation.from_bytes,
    "reservation": Reservation.decode,
    "reservation-receipt": ReservationReceipt.from_bytes,
}


def _error_field(kind: str, data: bytes) -> str:
    try:
        DECODERS[kind](data)
    except GovernanceError as e:
        return e.field
    raise AssertionError(f"negative vector for {kind} is accepted by the Python decoder")



def enrolment_file() -> dict[str, object]:
    """The signed messages of enrolment (5.33): a node's enrolment request, a person's identity
    request, and the genesis message an admin signs. The CSR bytes are opaque to the message
    (any DER; real requests carry a PKCS#10 CSR)."""
    from governance.enrolment import enrolment_request_message, genesis_message, identity_request_message

    csr_der = bytes.fromhex("3003020101")  # opaque here
    enc = X25519PrivateKey.from_private_bytes(bytes([0x31]) * 32).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    node_msg = enrolment_request_message(1, "node", "node-1", "node-1.example:7001", _public("node-1"), enc, csr_der)
    person_msg = identity_request_message(1, "approver", "alice", _public("alice"), csr_der)
    ca_der = bytes.fromhex("3003020102")  # opaque here: the CA certificate's DER
    policy_digest, roster_digest = bytes([0xD1]) * 32, bytes([0xD2]) * 32
    gen_msg = genesis_message(2, _admin_set().digest(), policy_digest, roster_digest, ca_der)
    return _file(
        "Enrolment messages (5.33): what a node's identity key signs in its enrolment request, what a person's "
        "signing key signs in an identity request, and the genesis message each admin signs.",
        {
            "enrolment_request": {
                "fields": {"version": 1, "role": "node", "name": "node-1", "endpoint": "node-1.example:7001",
                           "identity_key": _public("node-1").hex(), "encryption_key": enc.hex(), "csr_der": csr_der.hex()},
                "message": node_msg.hex(),
                "signature": _sig("node-1", node_msg, _private("node-1").sign(node_msg)),
            },
            "identity_request": {
                "fields": {"version": 1, "role": "approver", "name": "alice", "signing_key": _public("alice").hex(),
                           "csr_der": csr_der.hex()},
                "message": person_msg.hex(),
                "signature": _sig("alice", person_msg, _private("alice").sign(person_msg)),
            },
            "genesis": {
                "fields": {"threshold": 2, "governance_root": _admin_set().digest().hex(), "initial_policy_digest": policy_digest.hex(),
                           "roster_change_digest": roster_digest.hex(), "ca_der": ca_der.hex()},
                "message": gen_msg.hex(),
                "digest": hashlib.sha256(gen_msg).hexdigest(),
                "admin_signatures": [_sig(a, gen_msg, _private(a).sign(gen_msg)) for a in ("ada", "bob")],
            },
        },
    )


FILES: dict[str, Callable[[], dict[str, object]]] = {
    "keys.json": keys_file,
    "admin-set.json": admin_set_file,
    "key-policy.json": key_policy_file,
    "policy-change.json": policy_change_file,
    "signing-request.json": signing_request_file,
    "approval.json": approval_file,
    "policy-attestation.json": attestation_file,
    "reservation.json": reservation_file,
    "audit.json": audit_file,
    "negative.json": negative_file,
    "roster.json": roster_file,
    "key-operation.json": key_operation_file,
    "recovery.json": recovery_file,
    "enrolment.json": enrolment_file,
}


def build() -> dict[str, str]:
    """``file name -> exact file text`` of every vector file."""
    return {name: json.dumps(make(), indent=2, ensure_ascii=False) + "\n" for name, make in FILES.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed vector file is stale or missing")
    args = parser.parse_args(argv)
    files = build()
    if args.check:
        stale = [
            name for name, text in files.items()
            if not (VECTORS_DIR / name).is_file() or (VECTORS_DIR / name).read_text(encoding="utf-8") != text
        ]
        extra = sorted(p.name for p in VECTORS_DIR.glob("*.json") if p.name not in files) if VECTORS_DIR.is_dir() else []
        for name in stale:
            print(f"stale or missing: spec/vectors/{name}", file=sys.stderr)
        for name in extra:
            print(f"not generated by {GENERATOR}: spec/vectors/{name}", file=sys.stderr)
        if stale or extra:
            print(f"run: python {GENERATOR}", file=sys.stderr)
            return 1
        print(f"spec/vectors/ is up to date ({len(files)} files)")
        return 0
    VECTORS_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (VECTORS_DIR / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(files)} files to spec/vectors/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
