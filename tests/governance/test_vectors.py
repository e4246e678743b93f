"""The wire-contract vectors (spec/vectors/*.json, spec/governance-v1.md) against the Python code.

Every positive vector must be reproduced exactly by the encoders (fields -> bytes), read back by
the strict decoders (bytes -> fields), and its signatures must be reproduced from the fixed test
seeds and accepted by the verifiers; every negative vector must be refused. The committed files
must be exactly what scripts/gen_vectors.py generates (a staleness check, like gen_proto --check).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from governance import verify_entries
from governance.approval import (
    Approval,
    ApprovalBundle,
    Decision,
    SigningRequest,
    check_approval,
    sign_approval,
)
from governance.attestation import (
    PolicyAttestation,
    PolicyHead,
    SignedPolicyAttestation,
    sign_attestation,
)
from governance.audit import genesis_hash
from governance.errors import GovernanceError
from governance.policy import (
    DEFAULT_SCOPE,
    AdminSet,
    KeyPolicy,
    PolicyChange,
    SignedPolicyChange,
    check_admin_signature,
    sign_policy_change,
)
from governance.reservation import Reservation, ReservationReceipt, sign_reservation, verify_receipts
from governance.roster import (
    Roster,
    RosterChange,
    RosterEntry,
    SignedRosterChange,
    verify_roster_change,
    verify_roster_history,
)

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "spec" / "vectors"


def _load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_vectors", ROOT / "scripts" / "gen_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


KEYS = {k["name"]: k for k in _load("keys.json")["keys"]}


def _private(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(KEYS[name]["seed"]))


def _check_signature(sig: dict[str, str]) -> None:
    """``sig`` = {signer, public_key, message, signature}: reproduced from the seed, and verifies."""
    assert sig["public_key"] == KEYS[sig["signer"]]["public_key"]
    message, signature = bytes.fromhex(sig["message"]), bytes.fromhex(sig["signature"])
    assert _private(sig["signer"]).sign(message) == signature
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(sig["public_key"])).verify(signature, message)


def _admin_set() -> AdminSet:
    return AdminSet.from_dict(_load("admin-set.json")["vectors"][0]["fields"])


def _policy(name: str) -> KeyPolicy:
    (v,) = [v for v in _load("key-policy.json")["vectors"] if v["name"] == name]
    return KeyPolicy.from_dict(v["fields"])


def _scope(text: str) -> bytes:
    return DEFAULT_SCOPE if text == "default" else bytes.fromhex(text)


def _head(d: dict[str, Any]) -> PolicyHead:
    return PolicyHead(_scope(d["scope"]), d["version"], bytes.fromhex(d["digest"]))


def _reservation(d: dict[str, Any]) -> Reservation:
    return Reservation(
        bytes.fromhex(d["governance_root"]), bytes.fromhex(d["key_id"]), d["request_id"],
        bytes.fromhex(d["request_digest"]), d["attempt"], tuple(d["signers"]), bytes.fromhex(d["session_id"]),
    )


# --- staleness ------------------------------------------------------------------------------


def test_committed_vectors_are_what_the_generator_makes() -> None:
    files = _generator().build()
    committed = {p.name for p in VECTORS.glob("*.json")}
    assert committed == set(files), "run: python scripts/gen_vectors.py"
    for name, text in files.items():
        assert (VECTORS / name).read_text(encoding="utf-8") == text, f"spec/vectors/{name} is stale: run scripts/gen_vectors.py"


def test_generator_check_mode_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert _generator().main(["--check"]) == 0
    assert "spec/vectors/ is up to date" in capsys.readouterr().out


def test_keys_are_the_documented_fixed_seeds() -> None:
    for i, (name, k) in enumerate(KEYS.items()):
        seed = bytes.fromhex(k["seed"])
        assert len(seed) == 32 and len(set(seed)) == 1, name  # 0x01*32, 0x02*32, ...
        public = _private(name).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert public.hex() == k["public_key"], i


# --- positive vectors -----------------------------------------------------------------------


def test_admin_set() -> None:
    for v in _load("admin-set.json")["vectors"]:
        enc = bytes.fromhex(v["encoding"])
        assert AdminSet.from_dict(v["fields"]).encode() == enc
        decoded = AdminSet.from_bytes(enc)
        assert decoded.to_dict() == v["fields"]
        assert decoded.digest().hex() == v["digest"] == hashlib.sha256(enc).hexdigest()


def test_key_policies() -> None:
    for v in _load("key-policy.json")["vectors"]:
        enc = bytes.fromhex(v["encoding"])
        assert KeyPolicy.from_dict(v["fields"]).encode() == enc, v["name"]
        decoded = KeyPolicy.from_bytes(enc)
        assert decoded.to_dict() == v["fields"]
        assert decoded.digest().hex() == v["digest"] == hashlib.sha256(enc).hexdigest()


def test_policy_changes_and_admin_signatures() -> None:
    admins = _admin_set()
    current = {"default-v1-first": None, "key-a-v2-replaces-v1": _policy("key-a-v1")}
    data = _load("policy-change.json")
    for v in data["vectors"]:
        enc = bytes.fromhex(v["encoding"])
        change = PolicyChange.from_dict(v["fields"])
        assert change.encode() == enc
        assert PolicyChange.from_bytes(enc).to_dict() == v["fields"]
        assert change.digest().hex() == v["digest"] == hashlib.sha256(enc).hexdigest()
        assert v["proposal_id"] == v["digest"][:32]
        for s in v["admin_signatures"]:
            _check_signature(s)
            assert bytes.fromhex(s["message"]) == enc  # admins sign the PolicyChange encoding itself
            signature = sign_policy_change(change, s["signer"], _private(s["signer"]))
            assert signature.signature.hex() == s["signature"]
            check_admin_signature(admins, change, signature)
        signed_enc = bytes.fromhex(v["signed_change"]["encoding"])
        assert SignedPolicyChange.from_dict(v["signed_change"]["fields"]).to_bytes() == signed_enc
        signed = SignedPolicyChange.from_bytes(signed_enc)
        assert signed.to_dict() == v["signed_change"]["fields"]
        assert signed.verify(admins, current[v["name"]]) == change.new_policy
    for bad in data["invalid"]:
        signed = SignedPolicyChange.from_bytes(bytes.fromhex(bad["signed_change"]))
        with pytest.raises(GovernanceError):
            signed.verify(admins, None)


def test_signing_requests() -> None:
    for v in _load("signing-request.json")["vectors"]:
        enc = bytes.fromhex(v["encoding"])
        assert SigningRequest.from_dict(v["fields"]).encode() == enc
        decoded = SigningRequest.from_bytes(enc)
        assert decoded.to_dict() == v["fields"]
        assert decoded.request_digest().hex() == v["request_digest"] == hashlib.sha256(enc).hexdigest()


def test_approvals_and_bundle() -> None:
    data = _load("approval.json")
    policy = _policy("default-v1")
    (rv,) = [v for v in _load("signing-request.json")["vectors"] if v["name"] == data["request"]]
    request = SigningRequest.from_dict(rv["fields"])
    for a in data["approvals"]:
        f = a["fields"]
        _check_signature(a["signature"])
        assert a["signature"]["signer"] == f["approver"] and a["signature"]["signature"] == f["signature"]
        decision = Decision(f["decision"])
        assert sign_approval(request, f["approver"], _private(f["approver"]), decision).signature.hex() == f["signature"]
        check_approval(policy, request, Approval(f["approver"], decision, bytes.fromhex(f["signature"])))
    bundle_enc = bytes.fromhex(data["bundle"]["encoding"])
    assert ApprovalBundle.from_dict(data["bundle"]["fields"]).to_bytes() == bundle_enc
    bundle = ApprovalBundle.from_bytes(bundle_enc)
    assert bundle.to_dict() == data["bundle"]["fields"]
    result = bundle.verify(policy, now_ms=request.created_at_ms)
    assert result.approved == {"alice", "bert"} and result.rejected == {"carol"}
    assert result.request_digest.hex() == rv["request_digest"]
    for bad in data["invalid"]:
        b = bad["approval"]
        with pytest.raises(GovernanceError, match="does not verify"):
            check_approval(policy, request, Approval(b["approver"], Decision(b["decision"]), bytes.fromhex(b["signature"])))


def test_policy_attestation() -> None:
    data = _load("policy-attestation.json")
    for h in data["heads"]:
        assert _head(h["fields"]).encode().hex() == h["encoding"]
        assert _head(h["fields"]) == PolicyHead.from_bytes(bytes.fromhex(h["encoding"]))
    a = data["attestation"]
    enc = bytes.fromhex(a["encoding"])
    f = a["fields"]
    att = PolicyAttestation(
        bytes.fromhex(f["governance_root"]), f["issued_at_ms"], f["admin"], tuple(_head(h) for h in f["heads"])
    )
    assert att.encode() == enc and PolicyAttestation.from_bytes(enc) == att
    assert att.digest().hex() == a["digest"] == hashlib.sha256(enc).hexdigest()
    _check_signature(data["signature"])
    assert data["signature"]["signer"] == f["admin"] and bytes.fromhex(data["signature"]["message"]) == enc
    signed = sign_attestation(att, _private(f["admin"]))
    assert signed.signature.hex() == data["signature"]["signature"]
    assert signed.to_bytes().hex() == data["signed_attestation"]["encoding"]
    decoded = SignedPolicyAttestation.from_bytes(bytes.fromhex(data["signed_attestation"]["encoding"]))
    assert decoded.verify(_admin_set()) == att
    for bad in data["invalid"]:
        with pytest.raises(GovernanceError, match="does not verify"):
            SignedPolicyAttestation.from_bytes(bytes.fromhex(bad["signed_attestation"])).verify(_admin_set())


def test_reservation_and_receipts() -> None:
    data = _load("reservation.json")
    res = _reservation(data["reservation"]["fields"])
    assert res.encode().hex() == data["reservation"]["encoding"]
    assert Reservation.decode(bytes.fromhex(data["reservation"]["encoding"])) == res
    roster = {i: bytes.fromhex(KEYS[f"node-{i}"]["public_key"]) for i in (1, 2, 3)}
    for r in data["receipts"]:
        _check_signature(r["signature"])
        f = r["fields"]
        receipt = ReservationReceipt.from_bytes(bytes.fromhex(r["encoding"]))
        assert receipt == ReservationReceipt(_reservation(f["reservation"]), f["reserver"], bytes.fromhex(f["signature"]))
        assert receipt.verify(roster[f["reserver"]]) and not receipt.verify(roster[2])
        assert sign_reservation(res, f["reserver"], _private(r["signature"]["signer"])).to_bytes().hex() == r["encoding"]
    encodings = [bytes.fromhex(r["encoding"]) for r in data["receipts"]]
    assert verify_receipts(encodings, res, roster, 2) == {1, 3}
    for bad in data["invalid"]:
        with pytest.raises(GovernanceError):
            verify_receipts([encodings[0], bytes.fromhex(bad["receipt"])], res, roster, 2)


def _audit_rows(entries: list[dict[str, Any]]) -> list[tuple[object, ...]]:
    return [
        (
            e["fields"]["seq"], e["fields"]["timestamp_ms"], e["fields"]["actor"], e["fields"]["action"],
            e["fields"]["request_id"], e["fields"]["outcome"], e["details_json"], bytes.fromhex(e["prev_hash"]),
            bytes.fromhex(e["entry_hash"]), bytes.fromhex(e["signature"]["signature"]),
        )
        for e in entries
    ]


def test_audit_chain() -> None:
    data = _load("audit.json")
    pk = bytes.fromhex(data["public_key"])
    assert genesis_hash(data["component"], pk).hex() == data["genesis"]
    for e in data["entries"]:
        _check_signature(e["signature"])
        assert hashlib.sha256(bytes.fromhex(e["entry_preimage"])).hexdigest() == e["entry_hash"]
        assert json.dumps(e["fields"]["details"], sort_keys=True, separators=(",", ":"), ensure_ascii=False) == e["details_json"]
    rows = _audit_rows(data["entries"])
    report = verify_entries(data["component"], pk, rows)
    assert report.ok and report.entries == len(rows), report.reason
    for chain in data["invalid"]:
        bad_report = verify_entries(data["component"], pk, _audit_rows(chain["entries"]))
        assert not bad_report.ok and bad_report.first_broken == chain["first_broken"], (chain["name"], bad_report)
    tampered = list(rows)
    details_json = str(rows[2][6])
    tampered[2] = (*rows[2][:6], details_json.replace('"delta":-5', '"delta":-6'), *rows[2][7:])
    bad = verify_entries(data["component"], pk, tampered)
    assert not bad.ok and bad.first_broken == 3


# --- negative vectors -----------------------------------------------------------------------

DECODERS: dict[str, Any] = {
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
}  # written out here, not taken from the generator, so a decoder swapped there is caught here
NEGATIVE = _load("negative.json")["negative"]


@pytest.mark.parametrize("vector", NEGATIVE, ids=[f"{v['object']}:{v['name']}" for v in NEGATIVE])
def test_negative_vector_is_rejected(vector: dict[str, str]) -> None:
    with pytest.raises(GovernanceError) as info:
        DECODERS[vector["object"]](bytes.fromhex(vector["encoding"]))
    assert info.value.field == vector["python_error_field"], info.value


# --- a second encoder, written from spec/governance-v1.md alone -----------------------------
# It shares no code with governance.encoding: if the spec's tables (field order, kinds, counts,
# sorting) were incomplete or wrong, these would not reproduce the vectors.


def _f(b: bytes) -> bytes:
    return len(b).to_bytes(8, "big") + b


def _t(s: str) -> bytes:
    return _f(s.encode("utf-8"))


def _u(n: int) -> bytes:
    return _f(n.to_bytes(8, "big"))


def _i(n: int) -> bytes:
    return _f(n.to_bytes(8, "big", signed=True))


def _c(n: int) -> bytes:
    return n.to_bytes(4, "big")


def _tag(name: str) -> bytes:
    return _t("MPCNET/v1/gov/" + name)


def _h(x: str) -> bytes:
    return bytes.fromhex(x)


def _map(d: dict[str, str]) -> bytes:
    names = sorted(d, key=lambda n: n.encode())
    return _c(len(names)) + b"".join(_t(n) + _f(_h(d[n])) for n in names)


def _spec_scope(s: str) -> bytes:
    return b"default" if s == "default" else _h(s)


def spec_admin_set(f: dict[str, Any]) -> bytes:
    return _tag("admin-set") + _f(_h(f["cluster_id"])) + _map(f["admins"]) + _u(f["quorum"])


def spec_key_policy(f: dict[str, Any]) -> bytes:
    req = sorted(f["requesters"], key=lambda n: n.encode())
    return (
        _tag("key-policy") + _u(f["version"]) + _map(f["approvers"]) + _u(f["approval_quorum"])
        + _c(len(req)) + b"".join(_t(r) for r in req) + _u(f["ttl_seconds"])
        + _u(f["rate_limit"]["max_signatures"]) + _u(f["rate_limit"]["window_seconds"])
    )


def spec_policy_change(f: dict[str, Any]) -> bytes:
    prev = _c(0) if f["previous_digest"] is None else _c(1) + _f(_h(f["previous_digest"]))
    return (
        _tag("policy-change") + _f(_h(f["governance_root"])) + _f(_spec_scope(f["scope"]))
        + _f(spec_key_policy(f["new_policy"])) + prev
    )


def spec_signed_change(f: dict[str, Any]) -> bytes:
    sigs = f["signatures"]
    return (
        _tag("signed-policy-change") + _f(spec_policy_change(f["change"])) + _c(len(sigs))
        + b"".join(_t(s["admin"]) + _f(_h(s["signature"])) for s in sigs)
    )


def spec_signing_request(f: dict[str, Any]) -> bytes:
    path = f["derivation_path"]
    v2 = "scheme" in f  # issue 16: a Schnorr key's request (section 5.5, v2) appends scheme and taproot_root
    return (
        _tag("signing-request-v2" if v2 else "signing-request") + _t(f["request_id"]) + _f(_h(f["key_id"])) + _f(_h(f["digest"]))
        + _c(len(path)) + b"".join(_u(i) for i in path) + _t(f["requester"]) + _t(f["description"])
        + _u(f["created_at_ms"]) + _u(f["expires_at_ms"]) + _u(f["policy_version"]) + _f(_h(f["policy_digest"]))
        + (_t(f["scheme"]) + _f(_h(f["taproot_root"])) if v2 else b"")
    )


_CODE = {"approve": 1, "reject": 2}


def spec_approval_message(request: dict[str, Any], approver: str, decision: str) -> bytes:
    return _tag("approval") + _t(approver) + _u(_CODE[decision]) + _f(spec_signing_request(request))


def spec_bundle(f: dict[str, Any]) -> bytes:
    a = f["approvals"]
    return (
        _tag("approval-bundle") + _f(spec_signing_request(f["request"])) + _c(len(a))
        + b"".join(_t(x["approver"]) + _u(_CODE[x["decision"]]) + _f(_h(x["signature"])) for x in a)
    )


def spec_head(f: dict[str, Any]) -> bytes:
    return _tag("policy-head") + _f(_spec_scope(f["scope"])) + _u(f["version"]) + _f(_h(f["digest"]))


def spec_attestation(f: dict[str, Any]) -> bytes:
    heads = sorted(f["heads"], key=lambda h: _spec_scope(h["scope"]))
    return (
        _tag("policy-attestation") + _f(_h(f["governance_root"])) + _u(f["issued_at_ms"]) + _t(f["admin"])
        + _c(len(heads)) + b"".join(_f(spec_head(h)) for h in heads)
    )


def spec_reservation(f: dict[str, Any]) -> bytes:
    return (
        _tag("sign-reservation") + _f(_h(f["governance_root"])) + _f(_h(f["key_id"])) + _t(f["request_id"])
        + _f(_h(f["request_digest"])) + _u(f["attempt"]) + _c(len(f["signers"]))
        + b"".join(_u(j) for j in f["signers"]) + _f(_h(f["session_id"]))
    )


def spec_audit_details(d: dict[str, Any]) -> bytes:
    out = _tag("audit-details") + _c(len(d))
    for k in sorted(d, key=lambda k: k.encode()):
        v = d[k]
        if isinstance(v, bool):
            out += _t(k) + _u(3) + _f(b"\x01" if v else b"\x00")
        elif isinstance(v, int):
            out += _t(k) + _u(2) + _i(v)
        else:
            out += _t(k) + _u(1) + _t(v)
    return out


def test_an_encoder_written_from_the_spec_reproduces_every_vector() -> None:
    for v in _load("admin-set.json")["vectors"]:
        assert spec_admin_set(v["fields"]).hex() == v["encoding"]
    for v in _load("key-policy.json")["vectors"]:
        assert spec_key_policy(v["fields"]).hex() == v["encoding"]
    for v in _load("policy-change.json")["vectors"]:
        assert spec_policy_change(v["fields"]).hex() == v["encoding"]
        assert all(s["message"] == v["encoding"] for s in v["admin_signatures"])
        assert spec_signed_change(v["signed_change"]["fields"]).hex() == v["signed_change"]["encoding"]
    requests = {v["name"]: v for v in _load("signing-request.json")["vectors"]}
    for v in requests.values():
        assert spec_signing_request(v["fields"]).hex() == v["encoding"]
    data = _load("approval.json")
    req = requests[data["request"]]["fields"]
    for a in data["approvals"]:
        f = a["fields"]
        assert spec_approval_message(req, f["approver"], f["decision"]).hex() == a["signature"]["message"]
    assert spec_bundle(data["bundle"]["fields"]).hex() == data["bundle"]["encoding"]
    att = _load("policy-attestation.json")
    for h in att["heads"]:
        assert spec_head(h["fields"]).hex() == h["encoding"]
    enc = spec_attestation(att["attestation"]["fields"])
    assert enc.hex() == att["attestation"]["encoding"] == att["signature"]["message"]
    signed = _tag("signed-policy-attestation") + _f(enc) + _f(_h(att["signature"]["signature"]))
    assert signed.hex() == att["signed_attestation"]["encoding"]
    res = _load("reservation.json")
    r_enc = spec_reservation(res["reservation"]["fields"])
    assert r_enc.hex() == res["reservation"]["encoding"]
    for r in res["receipts"]:
        j = r["fields"]["reserver"]
        assert (_tag("sign-reservation-receipt-message") + _f(r_enc) + _u(j)).hex() == r["signature"]["message"]
        receipt = _tag("sign-reservation-receipt") + _f(r_enc) + _u(j) + _f(_h(r["fields"]["signature"]))
        assert receipt.hex() == r["encoding"]
    audit = _load("audit.json")
    pk = _h(audit["public_key"])
    prev = hashlib.sha256(_tag("audit-genesis") + _t(audit["component"]) + _f(pk)).digest()
    assert prev.hex() == audit["genesis"]
    for e in audit["entries"]:
        f = e["fields"]
        details = spec_audit_details(f["details"])
        assert details.hex() == e["details_encoding"]
        pre = (
            _tag("audit-entry") + _u(f["seq"]) + _u(f["timestamp_ms"]) + _t(f["actor"]) + _t(f["action"])
            + _t(f["request_id"]) + _t(f["outcome"]) + _f(details) + _f(prev)
        )
        assert pre.hex() == e["entry_preimage"]
        prev = hashlib.sha256(pre).digest()
        assert prev.hex() == e["entry_hash"]
        assert (_tag("audit-signature") + _f(prev)).hex() == e["signature"]["message"]


# --- roster.json (5.13-5.16) ----------------------------------------------------------------

ROSTER = _load("roster.json")
ROSTER_DECODERS: dict[str, Any] = {
    "roster-entry": RosterEntry.from_bytes,
    "roster": Roster.from_bytes,
    "roster-change": RosterChange.from_bytes,
    "signed-roster-change": SignedRosterChange.from_bytes,
}


def spec_roster_entry(f: dict[str, Any]) -> bytes:
    status = {"active": 1, "revoked": 2}[f["status"]]
    return (
        _tag("roster-entry") + _u(f["index"]) + _t(f["name"]) + _f(_h(f["identity_key"])) + _f(_h(f["encryption_key"]))
        + _f(_h(f["tls_fingerprint"])) + _t(f["endpoint"]) + _u(status) + _u(f["key_version"])
    )


def spec_roster(f: dict[str, Any]) -> bytes:
    entries = f["entries"]
    return _tag("roster") + _u(f["version"]) + _u(f["epoch"]) + _c(len(entries)) + b"".join(_f(spec_roster_entry(e)) for e in entries)


def spec_roster_change(f: dict[str, Any]) -> bytes:
    prev = _c(0) if f["previous_digest"] is None else _c(1) + _f(_h(f["previous_digest"]))
    return _tag("roster-change") + _f(_h(f["governance_root"])) + _f(spec_roster(f["new_roster"])) + prev


def test_roster_chain_vectors() -> None:
    admins = AdminSet.from_dict(_load("admin-set.json")["vectors"][0]["fields"])
    prev: Roster | None = None
    history = []
    for v in ROSTER["chain"]:
        roster = Roster.from_dict(v["roster"]["fields"])
        assert roster.encode().hex() == v["roster"]["encoding"] == spec_roster(v["roster"]["fields"]).hex()
        assert roster.digest().hex() == v["roster"]["digest"]
        assert Roster.from_bytes(_h(v["roster"]["encoding"])) == roster
        assert [e.encode().hex() for e in roster.entries] == v["entries"]
        change = RosterChange.from_dict(v["change"]["fields"])
        assert change.encode().hex() == v["change"]["encoding"] == spec_roster_change(v["change"]["fields"]).hex()
        assert change.digest().hex() == v["change"]["digest"]
        for sig in v["admin_signatures"]:
            assert sig["message"] == v["change"]["encoding"]
            _check_signature(sig)
        signed = SignedRosterChange.from_bytes(_h(v["signed_change"]["encoding"]))
        assert signed == SignedRosterChange.from_dict(v["signed_change"]["fields"])
        assert signed.to_bytes().hex() == v["signed_change"]["encoding"]
        assert verify_roster_change(prev, signed, admins) == roster
        history.append(signed)
        prev = roster
    assert verify_roster_history(admins, history) == prev


@pytest.mark.parametrize("vector", ROSTER["invalid"], ids=[v["name"] for v in ROSTER["invalid"]])
def test_roster_invalid_vector_is_refused(vector: dict[str, Any]) -> None:
    admins = AdminSet.from_dict(_load("admin-set.json")["vectors"][0]["fields"])
    rosters = {v["name"]: Roster.from_dict(v["roster"]["fields"]) for v in ROSTER["chain"]}
    prev = None if vector["after"] is None else rosters[vector["after"]]
    expected = {"one-admin-of-quorum-2": "signatures", "not-chained": "previous_digest", "revoked-index-reused": "new_roster.entries[2]"}
    with pytest.raises(GovernanceError) as info:
        verify_roster_change(prev, SignedRosterChange.from_bytes(_h(vector["signed_change"])), admins)
    assert info.value.field == expected[vector["name"]], info.value


@pytest.mark.parametrize("vector", ROSTER["negative"], ids=[f"{v['object']}:{v['name']}" for v in ROSTER["negative"]])
def test_roster_negative_vector_is_rejected(vector: dict[str, str]) -> None:
    with pytest.raises(GovernanceError) as info:
        ROSTER_DECODERS[vector["object"]](bytes.fromhex(vector["encoding"]))
    assert info.value.field == vector["python_error_field"], info.value


# --- key-operation.json (5.17-5.19) ---------------------------------------------------------

KEYOPS = _load("key-operation.json")


def spec_key_operation(f: dict[str, Any]) -> bytes:
    """KeyOperation (5.17) rebuilt from the spec's field table."""
    kind = {"refresh": 1, "reshare": 2}[f["kind"]]
    v2 = "scheme" in f  # issue 16: a FROST key's operation (5.17 v2) appends its scheme
    out = _tag("key-operation-v2" if v2 else "key-operation") + _f(_h(f["governance_root"])) + _f(_h(f["op_id"]))
    out += _u(kind) + _f(_h(f["key_id"]))
    out += _f(_h(f["public_key"])) + _f(_h(f["chain_code"])) + _u(f["old_epoch"]) + _u(f["old_threshold"])
    out += _c(len(f["old_committee"])) + b"".join(_u(i) for i in f["old_committee"])
    out += _u(f["new_threshold"]) + _c(len(f["new_committee"])) + b"".join(_u(i) for i in f["new_committee"])
    return out + _u(f["roster_version"]) + _t(f["reason"]) + (_t(f["scheme"]) if v2 else b"")


def test_key_operation_vectors() -> None:
    from governance.keyop import KeyOperation, SignedKeyOperation, check_authorized

    admins = AdminSet.from_dict(_load("admin-set.json")["vectors"][0]["fields"])
    history = [SignedRosterChange.from_bytes(_h(v["signed_change"]["encoding"])) for v in ROSTER["chain"]]
    roster = verify_roster_history(admins, history)
    for v in KEYOPS["operations"]:
        op = KeyOperation.from_dict(v["operation"]["fields"])
        assert op.encode().hex() == v["operation"]["encoding"] == spec_key_operation(v["operation"]["fields"]).hex()
        assert op.digest().hex() == v["operation"]["digest"]
        assert KeyOperation.from_bytes(_h(v["operation"]["encoding"])) == op
        signed = SignedKeyOperation.from_bytes(_h(v["signed_operation"]["encoding"]))
        assert signed.operation == op and SignedKeyOperation.from_dict(v["signed_operation"]["fields"]) == signed
        for sig in v["admin_signatures"]:
            assert sig["message"] == op.encode().hex()
        how = check_authorized(signed, admins, roster)
        assert how == ("roster" if not signed.signatures else "admin-quorum"), v["name"]


def test_epoch_receipt_vectors_form_a_commit_certificate() -> None:
    from governance.keyop import EpochReceipt, KeyOperation, verify_commit_certificate

    op = KeyOperation.from_dict(KEYOPS["operations"][0]["operation"]["fields"])
    keys = {1: "node-1-rotated", 2: "node-2", 4: "node-4"}
    identities = {i: bytes.fromhex(KEYS[k]["public_key"]) for i, k in keys.items()}
    encodings = [_h(r["encoding"]) for r in KEYOPS["receipts"]]
    for r, enc in zip(KEYOPS["receipts"], encodings, strict=True):
        rec = EpochReceipt.from_bytes(enc)
        assert rec.message().hex() == r["message"] and rec.signature.hex() == r["signature"]
        assert rec.verify(identities[rec.holder]) and rec.to_bytes() == enc
    cert = verify_commit_certificate(
        encodings, governance_root=op.governance_root, key_id=op.key_id, session_id=bytes([7] * 32), identities=identities
    )
    assert (cert.epoch, cert.threshold, cert.committee, cert.op_digest) == (1, 2, (1, 2, 4), op.digest())


# --- recovery.json (5.21-5.32) --------------------------------------------------------------

RECOVERY = _load("recovery.json")


def spec_recovery_config(f: dict[str, Any]) -> bytes:
    """RecoveryConfig (5.21, 5.22) rebuilt from the spec's field tables."""
    officers = [_tag("recovery-officer") + _t(o["name"]) + _f(_h(o["recipient"])) for o in f["officers"]]
    return (
        _tag("recovery-config") + _u(f["version"]) + _c(len(officers)) + b"".join(_f(o) for o in officers)
        + _u(f["quorum"]) + _u(f["export_quorum"]) + _u(f["drill_period_s"])
    )


def spec_recovery_config_change(f: dict[str, Any]) -> bytes:
    prev = _c(0) if f["previous_digest"] is None else _c(1) + _f(_h(f["previous_digest"]))
    return _tag("recovery-config-change") + _f(_h(f["governance_root"])) + prev + _f(spec_recovery_config(f["config"]))


def spec_backup_key(f: dict[str, Any]) -> bytes:
    return (
        _tag("backup-key") + _f(_h(f["key_id"])) + _f(_h(f["public_key"])) + _f(_h(f["chain_code"])) + _t(f["label"])
        + _u(f["threshold"]) + _u(f["epoch"]) + _c(len(f["committee"])) + b"".join(_u(i) for i in f["committee"])
        + _c(len(f["public_shares"])) + b"".join(_f(_h(s)) for s in f["public_shares"])
    )


def spec_backup_key_v2(f: dict[str, Any]) -> bytes:
    """BackupKey v2 (5.25, issue 16: a FROST key's record) rebuilt from the spec's text."""
    return (
        _tag("backup-key-v2") + _f(_h(f["key_id"])) + _t(f["scheme"]) + _f(_h(f["public_key"])) + _f(_h(f["chain_code"]))
        + _t(f["label"]) + _u(f["threshold"]) + _u(f["epoch"]) + _c(len(f["committee"]))
        + b"".join(_u(i) for i in f["committee"]) + _c(len(f["public_shares"])) + b"".join(_f(_h(s)) for s in f["public_shares"])
    )


def test_frost_backup_key_vector() -> None:
    from governance.recovery import BackupKey

    v = RECOVERY["backup_key_frost"]
    key = BackupKey.from_dict(v["fields"])
    assert key.scheme == "ed25519" and key.chain_code == b"" and len(key.public_key) == 32
    assert key.encode().hex() == v["encoding"] == spec_backup_key_v2(v["fields"]).hex()
    assert key.digest().hex() == v["digest"] and BackupKey.from_bytes(key.encode()) == key


def spec_backup_part(f: dict[str, Any]) -> bytes:
    out = _tag("backup-part") + b"".join(_f(_h(f[k])) for k in ("governance_root", "key_digest", "key_id"))
    out += b"".join(_u(f[k]) for k in ("epoch", "share_index", "node", "roster_version", "config_version"))
    out += _f(_h(f["config_digest"])) + _c(len(f["commitments"])) + b"".join(_f(_h(c)) for c in f["commitments"])
    return out + _c(len(f["pieces"])) + b"".join(_f(_h(p)) for p in f["pieces"]) + _u(f["created_ms"])


def spec_recovery_order(f: dict[str, Any]) -> bytes:
    kind = {"restore": 1, "export": 2}[f["kind"]]
    out = _tag("recovery-order") + _f(_h(f["governance_root"])) + _f(_h(f["order_id"])) + _u(kind)
    out += _f(_h(f["key_id"])) + _f(_h(f["public_key"])) + _f(_h(f["chain_code"])) + _u(f["epoch"])
    out += _f(_h(f["bundle_digest"])) + _u(f["config_version"]) + _u(f["roster_version"]) + _c(len(f["targets"]))
    out += b"".join(_u(t["share_index"]) + _u(t["node"]) for t in f["targets"]) + _f(_h(f["export_recipient"]))
    follow = _c(0) if f["follow_up"] is None else _c(1) + _f(spec_key_operation(f["follow_up"]))
    return out + follow + _t(f["reason"]) + _u(f["expires_ms"])


def test_recovery_config_vectors() -> None:
    from governance.recovery import (
        RecoveryConfig,
        RecoveryConfigChange,
        SignedRecoveryConfigChange,
        verify_recovery_config_change,
        verify_recovery_config_history,
    )

    admins = _admin_set()
    prev = None
    history = []
    for v in RECOVERY["configs"]:
        config = RecoveryConfig.from_dict(v["config"]["fields"])
        assert config.encode().hex() == v["config"]["encoding"] == spec_recovery_config(v["config"]["fields"]).hex()
        assert config.digest().hex() == v["config"]["digest"] and RecoveryConfig.from_bytes(_h(v["config"]["encoding"])) == config
        assert [o.encode().hex() for o in config.officers] == v["officers"]
        change = RecoveryConfigChange.from_dict(v["change"]["fields"])
        assert change.encode().hex() == v["change"]["encoding"] == spec_recovery_config_change(v["change"]["fields"]).hex()
        assert change.digest().hex() == v["change"]["digest"]
        for sig in v["admin_signatures"]:
            assert sig["message"] == v["change"]["encoding"]
            _check_signature(sig)
        signed = SignedRecoveryConfigChange.from_bytes(_h(v["signed_change"]["encoding"]))
        assert signed == SignedRecoveryConfigChange.from_dict(v["signed_change"]["fields"])
        assert verify_recovery_config_change(prev, signed, admins) == config
        history.append(signed)
        prev = config
    assert verify_recovery_config_history(admins, history) == prev
    expected = {"export-quorum-not-above-admin-quorum": "config.export_quorum", "one-admin-of-quorum-2": "signatures"}
    for v in RECOVERY["invalid_configs"]:
        with pytest.raises(GovernanceError) as info:
            verify_recovery_config_change(None, SignedRecoveryConfigChange.from_bytes(_h(v["signed_change"])), admins)
        assert info.value.field == expected[v["name"]], info.value


def test_backup_bundle_vectors() -> None:
    from governance.recovery import BackupBundle, BackupKey, BackupPiece, PieceDelivery, RecoveryConfig, SignedBackupPart

    key = BackupKey.from_dict(RECOVERY["backup_key"]["fields"])
    assert key.encode().hex() == RECOVERY["backup_key"]["encoding"] == spec_backup_key(RECOVERY["backup_key"]["fields"]).hex()
    assert key.digest().hex() == RECOVERY["backup_key"]["digest"]
    for v in RECOVERY["parts"]:
        sp = SignedBackupPart.from_bytes(_h(v["signed_part"]))
        assert sp.part.encode().hex() == v["encoding"] == spec_backup_part(v["fields"]).hex()
        assert _private(v["signer"]).sign(sp.part.encode()).hex() == v["signature"] == sp.signature.hex()
        assert sp.verify(bytes.fromhex(KEYS[v["signer"]]["public_key"]))
    data = _h(RECOVERY["bundle"]["file"])
    bundle = BackupBundle.from_file(data)
    assert bundle.to_file() == data and bundle.digest().hex() == RECOVERY["bundle"]["digest"] == hashlib.sha256(data).hexdigest()
    assert bundle.key == key
    assert bundle.check_structure(_admin_set()) == RecoveryConfig.from_dict(RECOVERY["configs"][0]["config"]["fields"])
    piece = BackupPiece.from_bytes(_h(RECOVERY["piece"]["encoding"]))
    delivery = PieceDelivery.from_bytes(_h(RECOVERY["delivery"]["encoding"]))
    assert piece.value == delivery.value == bytes([0x11] * 32) and delivery.bundle_digest == bundle.digest()


def test_recovery_order_vectors() -> None:
    from governance.recovery import RecoveryConfig, RecoveryOrder, SignedRecoveryOrder, verify_recovery_order

    admins = _admin_set()
    config = RecoveryConfig.from_dict(RECOVERY["configs"][0]["config"]["fields"])
    for v in RECOVERY["orders"]:
        order = RecoveryOrder.from_dict(v["order"]["fields"])
        assert order.encode().hex() == v["order"]["encoding"] == spec_recovery_order(v["order"]["fields"]).hex()
        assert order.digest().hex() == v["order"]["digest"]
        for sig in v["admin_signatures"]:
            assert sig["message"] == v["order"]["encoding"]
            _check_signature(sig)
        signed = SignedRecoveryOrder.from_bytes(_h(v["signed_order"]["encoding"]))
        assert signed == SignedRecoveryOrder.from_dict(v["signed_order"]["fields"])
        assert verify_recovery_order(signed, admins, config) == order
        assert verify_recovery_order(signed, admins, config, now_ms=order.expires_ms - 1) == order
    for v in RECOVERY["invalid_orders"]:
        with pytest.raises(GovernanceError) as info:
            verify_recovery_order(SignedRecoveryOrder.from_bytes(_h(v["signed_order"])), admins, config, now_ms=v["now_ms"])
        assert info.value.field == v["error_field"], info.value


def test_recovery_receipt_and_drill_report_vectors() -> None:
    from governance.recovery import DrillReport, EpochAttestation, RecoveryReceipt

    for name, cls in (("receipt", RecoveryReceipt), ("drill_report", DrillReport), ("epoch_attestation", EpochAttestation)):
        v = RECOVERY[name]
        obj = cls.from_bytes(_h(v["encoding"]))
        assert obj.message().hex() == v["message"] and obj.to_bytes().hex() == v["encoding"]
        assert obj.signature == _private(v["signer"]).sign(obj.message())
        assert obj.verify(bytes.fromhex(KEYS[v["signer"]]["public_key"]))
    v = RECOVERY["epoch_attestation"]
    f = v["fields"]
    spec = _tag("epoch-attestation-message") + _f(_h(f["ceremony_id"])) + _f(_h(f["key_id"])) + _u(f["epoch"]) + _u(f["node"])
    spec += _u(f["attested_ms"])  # the node's clock when it signed (an officer counts only a recent one)
    assert v["message"] == spec.hex() and EpochAttestation.from_bytes(_h(v["encoding"])).to_dict() == f


@pytest.mark.parametrize("vector", RECOVERY["negative"], ids=[f"{v['object']}:{v['name']}" for v in RECOVERY["negative"]])
def test_recovery_negative_vector_is_rejected(vector: dict[str, str]) -> None:
    from governance.recovery import BackupBundle, DrillReport, RecoveryConfig, RecoveryOrder, SignedBackupPart

    decoders: dict[str, Any] = {
        "recovery-config": RecoveryConfig.from_bytes, "signed-backup-part": SignedBackupPart.from_bytes,
        "backup-bundle": BackupBundle.from_file, "recovery-order": RecoveryOrder.from_bytes, "drill-report": DrillReport.from_bytes,
    }
    with pytest.raises(GovernanceError) as info:
        decoders[vector["object"]](bytes.fromhex(vector["encoding"]))
    assert info.value.field == vector["python_error_field"], info.value
