"""Governance across real processes: approvals every node verifies, admin-quorum policies, roles.

The harness often plays a *compromised coordinator*: it calls the nodes directly with the
coordinator's certificate and sends them whatever approval bundles and policy changes it likes.
Without m valid approvals for exactly the session's request no node ever releases a signature
share; without an admin quorum no node installs a policy.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import message_factory

from coordinator.roles import RPC_ROLES
from governance.approval import Approval, ApprovalBundle, Decision, sign_approval
from governance.policy import DEFAULT_SCOPE, AdminSet, KeyPolicy, RateLimit, sign_policy_change
from mpc_node.main import ADMIN_RPCS
from mpcnet.client import MpcClient, MpcError, SigningTeam
from mpcnet.common.pki import CertPaths, issue_cert
from mpcnet.common.rpc import roles_text
from mpcnet.common.stores.audit import export_jsonl
from mpcnet.wire.mpc.v1 import coordinator_pb2, node_pb2

from .conftest import coordinator_handles, running_cluster
from .govtools import (
    approvals,
    approved_bundle,
    bundle,
    default_policy,
    now_ms,
    signed_change,
    signing_request,
)
from .outbox_util import outbox_drained
from .pool_util import pools_off
from .relay_util import reserve, reserve_request, route, run, start, step
from .test_cluster_api import _raw_channel, verify_independently

N, T = 3, 2
Code = grpc.StatusCode
DIGEST = bytes(range(32))


@pytest.fixture(scope="module")
def gc(tmp_path_factory):
    with running_cluster(tmp_path_factory, "gov-2of3", N, T, fault_files=True) as c:
        yield c


def _client(gc, who: str) -> MpcClient:
    return MpcClient.from_cluster(gc.lay.dir, identity=who, timeout=60)


@pytest.fixture(scope="module")
def admin(gc):
    with _client(gc, "admin1") as c:
        yield c


@pytest.fixture(scope="module")
def admin2(gc):
    with _client(gc, "admin2") as c:
        yield c


@pytest.fixture(scope="module")
def team(gc):
    with SigningTeam.from_cluster(gc.lay.dir, timeout=60) as t:
        yield t


@pytest.fixture(scope="module")
def gkey(admin):
    return admin.create_key("governance")


@pytest.fixture(scope="module")
def nodes(gc):
    """The harness holds the coordinator's certificate: a compromised coordinator."""
    with coordinator_handles(gc) as hs:
        yield hs


def node_audit(gc, i: int) -> list[dict]:
    outbox_drained(gc.lay.node_dir(i))  # entries committed with their state change are appended in the background
    buf = io.StringIO()
    export_jsonl(gc.lay.node_dir(i) / "audit.db", buf)
    return [json.loads(x) for x in buf.getvalue().splitlines()]


def released(gc, i: int, request_id: str) -> bool:
    return any(e["action"] == "sign-share" and e["outcome"] == "released" and e["request_id"] == request_id for e in node_audit(gc, i))


def sign_params(key, request_id: str, approval_bundle: bytes, *, signers=(1, 2), digest=DIGEST, path=()):
    return node_pb2.SignParams(
        key_id=key.key_id, signers=list(signers), digest=digest, derivation_path=list(path), request_id=request_id,
        approval_bundle=approval_bundle,
    )


def start_error(nodes, node: int, params: node_pb2.SignParams) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        nodes[node].stub.StartSession(node_pb2.StartSessionRequest(session_id=os.urandom(32), sign=params), timeout=10)
    return e.value


# --- a compromised coordinator cannot get a signature share without the quorum ---------------


def test_nodes_refuse_sessions_without_a_valid_quorum(gc, nodes, gkey) -> None:
    lay = gc.lay
    key_id = gkey.key_id
    outsider = Ed25519PrivateKey.generate()
    req = signing_request(lay, key_id, DIGEST)
    other = signing_request(lay, key_id, DIGEST, request_id=req.request_id + "x")

    def with_approvals(r, approvals_) -> bytes:
        return ApprovalBundle(r, tuple(approvals_)).to_bytes()

    def fresh(**kw):
        r = signing_request(lay, key_id, kw.pop("digest", DIGEST), kw.pop("path", ()), **kw)
        return r

    cases = []  # (name, request id in the session, bundle, session overrides, code, text)
    cases.append(("missing", req.request_id, b"", {}, Code.PERMISSION_DENIED, "sign.approval_bundle: missing"))
    cases.append(("malformed", req.request_id, b"\x00" * 40, {}, Code.PERMISSION_DENIED, "sign.approval_bundle.tag"))
    cases.append(("one of two", req.request_id, bundle(lay, req, "approver1"), {}, Code.PERMISSION_DENIED,
                  "sign.approval_bundle.approvals: 1 valid approval(s), 2 required"))
    forged = Approval("approver2", Decision.APPROVE, sign_approval(req, "approver2", outsider, Decision.APPROVE).signature)
    cases.append(("forged", req.request_id, with_approvals(req, [*approvals(lay, req, "approver1"), forged]), {},
                  Code.PERMISSION_DENIED, "approvals[1].signature: signature by approver 'approver2' does not verify"))
    dup = approvals(lay, req, "approver1")
    cases.append(("duplicated approver", req.request_id, with_approvals(req, dup + dup), {}, Code.PERMISSION_DENIED,
                  "approvals[1].approver: 'approver1' already decided"))
    admin_as_approver = [sign_approval(req, "admin1", outsider, Decision.APPROVE)]
    cases.append(("not an approver", req.request_id, with_approvals(req, approvals(lay, req, "approver1") + admin_as_approver), {},
                  Code.PERMISSION_DENIED, "'admin1' is not an approver of this policy"))
    rejected = approvals(lay, req, "approver1") + approvals(lay, req, "approver2", "approver3", decision=Decision.REJECT)
    cases.append(
        ("rejected", req.request_id, with_approvals(req, rejected), {}, Code.PERMISSION_DENIED, "rejected by approver2, approver3")
    )
    cases.append(("approvals of another request", req.request_id, with_approvals(req, approvals(lay, other, "approver1", "approver2")), {},
                  Code.PERMISSION_DENIED, "approvals[0].signature: signature by approver 'approver1' does not verify over this request"))
    expired = fresh(created_ms=now_ms() - 120_000, ttl_ms=60_000)
    cases.append(("expired", expired.request_id, bundle(lay, expired, "approver1", "approver2"), {}, Code.FAILED_PRECONDITION,
                  "sign.approval_bundle.request.expires_at_ms: request has expired"))
    future = fresh(created_ms=now_ms() + 600_000)
    cases.append(("from the future", future.request_id, bundle(lay, future, "approver1", "approver2"), {}, Code.FAILED_PRECONDITION,
                  "request.created_at_ms: request is not valid yet"))
    for field, override in (
        ("digest", {"digest": b"\x01" * 32}), ("derivation_path", {"path": [7]}), ("request_id", {"request_id": "someone-else"})
    ):
        ok = fresh()
        cases.append((f"session {field} differs", ok.request_id, bundle(lay, ok, "approver1", "approver2"), override,
                      Code.PERMISSION_DENIED, f"sign.approval_bundle.request.{field}: differs from the session's {field}"))
    stranger = fresh(requester="mallory")
    cases.append(("requester not allowed", stranger.request_id, bundle(lay, stranger, "approver1", "approver2"), {}, Code.PERMISSION_DENIED,
                  "request.requester: 'mallory' may not request"))
    pol = default_policy(lay)
    v2 = KeyPolicy(2, pol.approvers, 1, pol.requesters, pol.ttl_seconds, pol.rate_limit)
    stale = fresh(policy=v2)
    cases.append(("another policy version", stale.request_id, bundle(lay, stale, "approver1", "approver2"), {}, Code.FAILED_PRECONDITION,
                  "request.policy_version: request is for policy version 2, current is 1"))
    same_version = KeyPolicy(1, pol.approvers, 1, pol.requesters, pol.ttl_seconds, pol.rate_limit)
    lookalike = fresh(policy=same_version)
    cases.append(("another policy, same version", lookalike.request_id, bundle(lay, lookalike, "approver1"), {}, Code.FAILED_PRECONDITION,
                  "request.policy_digest: request was made under another policy"))

    for name, rid, b, override, code, text in cases:
        params = sign_params(gkey, override.get("request_id", rid), b, digest=override.get("digest", DIGEST), path=override.get("path", ()))
        kind = "expired" if name in ("expired", "from the future") else "stale-policy" if "policy" in name else "denied"
        for node in (1, 2):
            err = start_error(nodes, node, params)
            assert err.code() == code and text in err.details(), (name, node, err.code(), err.details())
            assert ("mpc-governance", kind) in err.trailing_metadata(), (name, err.trailing_metadata())
    for node in (1, 2):
        entries = node_audit(gc, node)
        refused = [e for e in entries if e["action"] == "sign-start" and e["outcome"] == "refused"]
        assert len(refused) >= len(cases)
        assert not any(e["action"] == "sign-share" for e in entries), "a share was released"


def test_a_served_attempt_is_never_served_again_but_an_unfinished_one_can_be_retried(gc, nodes, gkey) -> None:
    lay = gc.lay
    rid, b = approved_bundle(lay, gkey.key_id, DIGEST)
    # a session on nodes 1 and 2 that the (compromised) coordinator abandons before the shares
    sid = os.urandom(32)
    resps = start(nodes, sid, [1, 2], sign=sign_params(gkey, rid, b))
    step(nodes, sid, 1, route(resps, [1, 2]))
    for i in (1, 2):
        nodes[i].stub.AbortSession(node_pb2.AbortSessionRequest(session_id=sid, reason="test"), timeout=5)
    assert not released(gc, 1, rid) and not released(gc, 2, rid)
    # neither released a share (and no attempt was reserved): the same approved request still
    # signs, on another subset
    first = os.urandom(32)
    res = run(nodes, first, [1, 3], sign=sign_params(gkey, rid, b, signers=(1, 3)))
    assert all(isinstance(r, node_pb2.StepResponse) and r.finished for r in res.values()), res
    assert released(gc, 1, rid) and released(gc, 3, rid)
    # replays of attempt 1, on any subset and session: every node granted it to the first session
    for subset in ((1, 3), (1, 2), (2, 3)):
        params = sign_params(gkey, rid, b, signers=subset)
        for i in (1, 2, 3):
            with pytest.raises(grpc.RpcError) as e:
                nodes[i].stub.ReserveSigning(reserve_request(os.urandom(32), params, 1), timeout=10)
            assert e.value.code() == Code.FAILED_PRECONDITION, e.value.details()
            assert "attempt: attempt 1 of request" in e.value.details() and "already reserved for signers [1, 3]" in e.value.details()
            assert ("mpc-governance", "attempt-taken") in e.value.trailing_metadata()
    # the first session's receipts do not release a share in another session (node 2 never served)
    old = reserve(nodes, first, sign_params(gkey, rid, b, signers=(1, 3)), 1)
    errs = run(nodes, os.urandom(32), [1, 2], receipts=old, sign=sign_params(gkey, rid, b, signers=(1, 2)))
    for i in (1, 2):
        assert errs[i].code() == Code.PERMISSION_DENIED, errs[i].details()
        assert "reservation_receipts[0].reservation.signers: differs" in errs[i].details()
    assert not released(gc, 2, rid)


def test_policy_changed_mid_session_is_checked_again_before_the_share(gc, nodes, admin, admin2) -> None:
    """A node checks the bundle again, against the policy then in force, just before it
    releases its share: approvals made under a policy that was replaced meanwhile do not count."""
    key = admin.create_key("mid-session")
    rid, b = approved_bundle(gc.lay, key.key_id, DIGEST)
    sid = os.urandom(32)
    resps = start(nodes, sid, [1, 2], sign=sign_params(key, rid, b))
    out = step(nodes, sid, 1, route(resps, [1, 2]))
    p = admin.propose_policy(admin.next_policy(key.key_id, approval_quorum=3), key_id=key.key_id)
    assert admin2.approve_policy(p.proposal_id).state == "applied"  # pushed to every node
    while not all(r.finished for r in out.values() if isinstance(r, node_pb2.StepResponse)):
        errs = {k: v for k, v in out.items() if isinstance(v, grpc.RpcError)}
        if errs:
            break
        rnd = next(iter(out.values())).round
        out = step(nodes, sid, rnd, route(out, [1, 2]))
    errs = {k: v for k, v in out.items() if isinstance(v, grpc.RpcError)}
    assert set(errs) == {1, 2}
    for e in errs.values():  # the key's own v1 replaced the default v1: same version, another policy
        assert e.code() == Code.FAILED_PRECONDITION
        assert "sign.approval_bundle.request.policy_digest: request was made under another policy" in e.details()
    assert not released(gc, 1, rid) and not released(gc, 2, rid)


# --- policy changes need the admin quorum, whatever the coordinator says ---------------------


def test_nodes_refuse_policy_changes_without_admin_quorum(gc, nodes) -> None:
    lay = gc.lay
    pol = default_policy(lay)
    loose = KeyPolicy(2, pol.approvers, 1, pol.requesters | {"mallory"}, pol.ttl_seconds, pol.rate_limit)
    outsider = Ed25519PrivateKey.generate()
    one = signed_change(lay, loose, pol, "admin1")
    forged = signed_change(lay, loose, pol, "admin1")
    forged = type(forged)(forged.change, (*forged.signatures, sign_policy_change(forged.change, "admin2", outsider)))
    stranger = signed_change(lay, loose, pol, "admin1")
    stranger = type(stranger)(stranger.change, (*stranger.signatures, sign_policy_change(stranger.change, "eve", outsider)))
    other_root = AdminSet(lay.governance()[0].admins, 2, b"\x99" * 32)
    moved_change = type(one.change)(DEFAULT_SCOPE, loose, pol.digest(), other_root.digest())
    from mpcnet.client.identities import load_identity

    sigs = tuple(sign_policy_change(moved_change, a, load_identity(lay.dir, a).signing_key) for a in ("admin1", "admin2"))
    moved = type(one)(moved_change, sigs)
    replay = signed_change(lay, KeyPolicy(2, pol.approvers, 1, pol.requesters, pol.ttl_seconds, pol.rate_limit), None, "admin1", "admin2")
    cases = [
        ("one admin", one, Code.PERMISSION_DENIED, "signed_change.signatures: 1 distinct admin(s) signed, 2 required"),
        ("no signature", type(one)(one.change, ()), Code.PERMISSION_DENIED, "0 distinct admin(s) signed"),
        ("forged admin signature", forged, Code.PERMISSION_DENIED, "signatures[1].signature: signature by admin 'admin2' does not verify"),
        ("not an admin", stranger, Code.PERMISSION_DENIED, "signatures[1].admin: 'eve' is not an admin"),
        ("another cluster", moved, Code.PERMISSION_DENIED, "signed_change.governance_root: names another governance root"),
        ("not chained to the current policy", replay, Code.FAILED_PRECONDITION, "signed_change.previous_digest: missing"),
    ]
    for name, change, code, text in cases:
        for i in range(1, N + 1):
            with pytest.raises(grpc.RpcError) as e:
                nodes[i].stub.InstallPolicy(node_pb2.InstallPolicyRequest(signed_change=change.to_bytes()), timeout=10)
            assert e.value.code() == code and text in e.value.details(), (name, e.value.details())
    with pytest.raises(grpc.RpcError) as e:
        nodes[1].stub.InstallPolicy(node_pb2.InstallPolicyRequest(signed_change=b"junk"), timeout=10)
    assert e.value.code() == Code.INVALID_ARGUMENT
    for i in range(1, N + 1):
        got = nodes[i].stub.GetPolicies(node_pb2.GetPoliciesRequest(), timeout=10)
        default = [p for p in got.policies if p.scope == DEFAULT_SCOPE][0]
        assert default.version == 1 and default.policy_digest == pol.digest()
        assert got.governance_root == lay.governance()[0].digest()
    # with the quorum (here for a scope no key uses) a node installs it, once
    scratch = os.urandom(32)
    good = signed_change(lay, pol, None, "admin2", "admin3", scope=scratch)
    r = nodes[1].stub.InstallPolicy(node_pb2.InstallPolicyRequest(signed_change=good.to_bytes()), timeout=10)
    assert r.installed and r.policy.version == 1
    r = nodes[1].stub.InstallPolicy(node_pb2.InstallPolicyRequest(signed_change=good.to_bytes()), timeout=10)
    assert not r.installed
    refused = [e for e in node_audit(gc, 2) if e["action"] == "policy-install" and e["outcome"] == "refused"]
    assert len(refused) >= len(cases)


def test_coordinator_applies_a_proposal_only_at_the_admin_quorum(gc, admin, admin2, nodes) -> None:
    key = admin.create_key("quorum-proposal")
    p = admin.propose_policy(admin.next_policy(key.key_id, ttl_seconds=120), key_id=key.key_id)
    assert p.state == "pending" and p.signers == ["admin1"]
    assert admin.get_policy(key.key_id).inherited  # not applied
    for i in range(1, N + 1):
        got = nodes[i].stub.GetPolicies(node_pb2.GetPoliciesRequest(), timeout=10)
        assert key.key_id not in [x.scope for x in got.policies]
    with pytest.raises(MpcError) as e:  # admin1 cannot sign twice, nor as admin2
        admin.approve_policy(p.proposal_id)
    assert e.value.code == Code.ALREADY_EXISTS
    from mpcnet.wire.mpc.v1 import coordinator_pb2 as cpb

    sig = sign_policy_change(p.signed_change.change, "admin1", admin.identity.signing_key)
    with pytest.raises(MpcError) as e:
        admin._call(admin._stub.ApprovePolicyChange, cpb.ApprovePolicyChangeRequest(
            proposal_id=p.proposal_id, admin="admin2", signature=sig.signature
        ))
    assert e.value.code == Code.PERMISSION_DENIED and "differs from the signing admin 'admin2'" in e.value.message
    with pytest.raises(MpcError) as e:  # admin2's name, admin1's signature
        admin2._call(admin2._stub.ApprovePolicyChange, cpb.ApprovePolicyChangeRequest(
            proposal_id=p.proposal_id, admin="admin2", signature=sig.signature
        ))
    assert e.value.code == Code.PERMISSION_DENIED and "signature by admin 'admin2' does not verify" in e.value.message
    done = admin2.approve_policy(p.proposal_id)
    assert done.state == "applied" and sorted(done.signers) == ["admin1", "admin2"]
    for i in range(1, N + 1):
        got = nodes[i].stub.GetPolicies(node_pb2.GetPoliciesRequest(), timeout=10)
        mine = [x for x in got.policies if x.scope == key.key_id]
        assert mine and mine[0].version == 1
    view = admin.get_policy(key.key_id)
    assert not view.inherited and view.policy.ttl_seconds == 120


def test_a_node_that_was_down_gets_the_policy_when_it_is_back(gc, admin, admin2, nodes) -> None:
    key = admin.create_key("while-down")
    gc.kill("node-3")
    try:
        p = admin.propose_policy(admin.next_policy(key.key_id, ttl_seconds=600), key_id=key.key_id)
        assert admin2.approve_policy(p.proposal_id).state == "applied"
        st = {n.name: n for n in admin.cluster_status().nodes}
        assert not st["node-3"].policies_synced and st["node-1"].policies_synced
    finally:
        gc.start("node-3", gc.node_env[3])
        gc.wait_healthy(["node-3"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = nodes[3].stub.GetPolicies(node_pb2.GetPoliciesRequest(), timeout=10, wait_for_ready=True)
        if key.key_id in [x.scope for x in got.policies]:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("node-3 never received the policy")
    deadline = time.monotonic() + 10
    while not {n.name: n for n in admin.cluster_status().nodes}["node-3"].policies_synced:
        assert time.monotonic() < deadline
        time.sleep(0.2)


# --- roles -----------------------------------------------------------------------------------

IDENTITIES = {  # name -> role
    "admin1": "admin", "requester1": "requester", "approver1": "approver", "auditor1": "auditor",
    "client": "client", "node-1": "node", "coordinator": "coordinator", "officer1": "officer",
}
CLIENT_ROLES = ("admin", "requester", "approver", "auditor", "officer")


@pytest.mark.parametrize("who", sorted(IDENTITIES))
def test_every_role_is_denied_every_rpc_it_must_not_call(gc, who: str) -> None:
    role = IDENTITIES[who]
    svc = coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"]
    assert {m.name for m in svc.methods} == set(RPC_ROLES)  # the matrix covers every RPC
    denied = 0
    with _raw_channel(gc, gc.lay.endpoints()["coordinator"], who) as ch:
        for m in svc.methods:
            allowed = tuple(r for r in RPC_ROLES[m.name] if r in CLIENT_ROLES)
            if role in allowed:
                continue
            req = message_factory.GetMessageClass(m.input_type)()
            path = f"/mpc.v1.Coordinator/{m.name}"
            with pytest.raises(grpc.RpcError) as e:
                if m.server_streaming:
                    list(ch.unary_stream(path)(req.SerializeToString(), timeout=10))
                else:
                    ch.unary_unary(path)(req.SerializeToString(), timeout=10)
            assert e.value.code() == Code.PERMISSION_DENIED, (who, m.name, e.value.code())
            assert e.value.details() == (
                f"{path[1:]}: certificate {who!r} has role {role!r}; needs role {roles_text(allowed)}"
            ), e.value.details()
            denied += 1
    # 6 admin-only RPCs before issue 11, +5 (roster and key-operation proposals, their approval, node key rotation);
    # issue 12: recovery proposals (admin), bundles (admin, auditor, officer), drills (admin, officer), pieces (officer)
    expected = {"admin": 4, "requester": 17, "approver": 17, "auditor": 15, "officer": 29}.get(role, len(RPC_ROLES))
    assert denied == expected
    if role != "coordinator":
        node = node_pb2.DESCRIPTOR.services_by_name["Node"]
        with _raw_channel(gc, gc.lay.endpoints()["node-2"], who) as ch:
            for m in node.methods:
                if role == "admin" and m.name in ADMIN_RPCS:
                    continue  # admins push policies and attestations directly (test_attestation.py)
                req = message_factory.GetMessageClass(m.input_type)()
                with pytest.raises(grpc.RpcError) as e:
                    ch.unary_unary(f"/mpc.v1.Node/{m.name}")(req.SerializeToString(), timeout=10)
                needed = "needs role coordinator or admin" if m.name in ADMIN_RPCS else "needs role coordinator"
                assert e.value.code() == Code.PERMISSION_DENIED and needed in e.value.details(), (who, m.name)


def test_denials_are_audited(gc) -> None:
    with _raw_channel(gc, gc.lay.endpoints()["coordinator"], "auditor1") as ch:
        with pytest.raises(grpc.RpcError):
            ch.unary_unary("/mpc.v1.Coordinator/CreateKey")(coordinator_pb2.CreateKeyRequest(label="x").SerializeToString(), timeout=10)
    buf = io.StringIO()
    export_jsonl(gc.lay.coordinator_dir / "audit.db", buf)
    entries = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert any(
        e["action"] == "rpc-denied" and e["actor"] == "auditor1"
        and e["details"] == {"method": "CreateKey", "role": "auditor", "needed": "admin"}
        for e in entries
    )


def test_names_in_certificates_bind_approvals_and_requests(gc, team, gkey, tmp_path) -> None:
    r = team.requester.submit_sign_request(gkey.key_id, b"\x05" * 32, description="name binding")
    from mpcnet.wire.mpc.v1 import coordinator_pb2 as cpb

    a1 = team.approvers[0]
    sig = sign_approval(r.request, "approver2", a1.identity.signing_key, Decision.APPROVE)
    with pytest.raises(MpcError) as e:  # approver1 approving as approver2
        a1._call(a1._stub.DecideSignRequest, cpb.DecideSignRequestRequest(
            request_id=r.request_id, approver="approver2", decision=cpb.DECISION_APPROVE, signature=sig.signature))
    assert e.value.code == Code.PERMISSION_DENIED
    assert "certificate name 'approver1' differs from the approver 'approver2'" in e.value.message
    other = signing_request(gc.lay, gkey.key_id, b"\x06" * 32)
    wrong = sign_approval(other, "approver1", a1.identity.signing_key, Decision.APPROVE)
    with pytest.raises(MpcError) as e:  # a valid signature, over another request
        a1._call(a1._stub.DecideSignRequest, cpb.DecideSignRequestRequest(
            request_id=r.request_id, approver="approver1", decision=cpb.DECISION_APPROVE, signature=wrong.signature))
    assert e.value.code == Code.PERMISSION_DENIED
    assert "approval.signature: signature by approver 'approver1' does not verify" in e.value.message
    assert team.requester.get_sign_request(r.request_id).approvals == ()
    # a second requester certificate: not in the policy, and cannot read requester1's requests
    cert = issue_cert(gc.lay.ca, tmp_path, "requester2", role="requester")
    info = json.loads(gc.lay.info_path.read_text())
    with MpcClient(info["coordinator"]["endpoint"], CertPaths(cert.cert, cert.key), gc.lay.ca.cert, timeout=30) as r2:
        with pytest.raises(MpcError) as e:
            r2.submit_sign_request(gkey.key_id, b"\x07" * 32)
        assert e.value.code == Code.PERMISSION_DENIED and "'requester2' may not request signatures" in e.value.message
        with pytest.raises(MpcError) as e:
            r2.get_sign_request(r.request_id)
        assert e.value.code == Code.PERMISSION_DENIED and "belongs to requester 'requester1'" in e.value.message
        assert "needs role admin, approver or auditor" in e.value.message
        assert r2.list_sign_requests() == []
    assert r.request_id in [x.request_id for x in team.requester.list_sign_requests()]
    team.approvers[1].reject(r.request_id)


# --- rate limits and expiry under concurrency ------------------------------------------------


def _key_with_policy(admin, admin2, label: str, **changes) -> tuple:
    key = admin.create_key(label)
    p = admin.propose_policy(admin.next_policy(key.key_id, **changes), key_id=key.key_id)
    assert admin2.approve_policy(p.proposal_id).state == "applied"
    return key, admin.get_policy(key.key_id).policy


def test_rate_limit_holds_at_submission_under_concurrency(gc, admin, admin2, team) -> None:
    key, _ = _key_with_policy(admin, admin2, "rate-3", rate_limit=RateLimit(3, 3600))
    results: list[object] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def submit(j: int) -> None:
        barrier.wait()
        try:
            out: object = team.requester.submit_sign_request(key.key_id, bytes([j]) * 32, description=f"burst {j}")
        except MpcError as e:
            out = e
        with lock:
            results.append(out)

    threads = [threading.Thread(target=submit, args=(j,)) for j in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = [r for r in results if not isinstance(r, MpcError)]
    refused = [r for r in results if isinstance(r, MpcError)]
    assert len(accepted) == 3 and len(refused) == 5
    assert all(e.code == Code.RESOURCE_EXHAUSTED and "rate_limit:" in e.message and "allows 3" in e.message for e in refused)
    done = []
    for r in accepted:
        team.approvers[0].approve(r.request_id)
        done.append(team.approvers[1].approve(r.request_id))
    finals = [team.requester.wait_sign_request(r.request_id) for r in done]
    assert [f.state for f in finals] == ["done"] * 3
    for f in finals:
        verify_independently(key.public_key, f.signature.der, f.request.digest)
    with pytest.raises(MpcError) as e:
        team.requester.submit_sign_request(key.key_id, b"\x99" * 32)
    assert e.value.code == Code.RESOURCE_EXHAUSTED


def test_rate_limit_holds_at_the_nodes_under_concurrent_sessions(gc, admin, admin2, nodes) -> None:
    """A compromised coordinator that ignores the limit and runs many approved sessions at once:
    each node still releases at most the limit's number of shares for the key."""
    key, policy = _key_with_policy(admin, admin2, "rate-2", rate_limit=RateLimit(2, 3600))
    lay = gc.lay
    reqs = []
    for j in range(5):
        req = signing_request(lay, key.key_id, bytes([j + 1]) * 32, policy=policy)
        reqs.append((req, bundle(lay, req, "approver1", "approver2")))
    outcomes: dict[str, object] = {}
    lock = threading.Lock()

    def session(req, b) -> None:
        params = sign_params(key, req.request_id, b, digest=req.digest)
        try:
            res = run(nodes, os.urandom(32), [1, 2], sign=params)
        except grpc.RpcError as e:
            res = {0: e}
        with lock:
            outcomes[req.request_id] = res

    threads = [threading.Thread(target=session, args=rb) for rb in reqs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    complete = [rid for rid, res in outcomes.items() if all(isinstance(r, node_pb2.StepResponse) and r.finished for r in res.values())]
    assert 1 <= len(complete) <= 2
    for i in (1, 2):
        shares = [
            e for e in node_audit(gc, i)
            if e["action"] == "sign-share" and e["outcome"] == "released" and e["details"].get("key_id") == key.key_id.hex()
        ]
        assert len(shares) <= 2
    errors = [r for res in outcomes.values() for r in res.values() if isinstance(r, grpc.RpcError)]
    assert errors and all(e.code() == Code.FAILED_PRECONDITION and "rate_limit" in e.details() for e in errors)


def test_expiry_holds_under_concurrent_requests(gc, team, gkey) -> None:
    reqs = []
    lock = threading.Lock()

    def submit(j: int) -> None:
        r = team.requester.submit_sign_request(gkey.key_id, bytes([0x40 + j]) * 32, description=f"short {j}", ttl_seconds=2)
        with lock:
            reqs.append(r)

    threads = [threading.Thread(target=submit, args=(j,)) for j in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.request.expires_at_ms - r.request.created_at_ms == 2000 for r in reqs)
    fast, slow = reqs[:2], reqs[2:]
    for r in fast:
        team.approvers[0].approve(r.request_id)
        team.approvers[1].approve(r.request_id)
    team.approvers[0].approve(slow[0].request_id)  # one approval: not enough before the deadline
    watcher = team.requester.watch_sign_request(slow[1].request_id)
    assert next(watcher).state == "pending_approval"
    time.sleep(2.6)
    assert next(watcher).state == "expired"  # pushed to the watcher by the sweep
    watcher.close()
    for r in fast:
        assert team.requester.wait_sign_request(r.request_id).state == "done"
    for r in slow:
        got = team.requester.get_sign_request(r.request_id)
        assert got.state == "expired" and got.signature is None
        with pytest.raises(MpcError) as e:  # the approver's client refuses to sign it
            team.approvers[1].approve(r.request_id)
        assert e.value.code == Code.FAILED_PRECONDITION and "already expired by this machine's clock" in e.value.message
        with pytest.raises(MpcError) as e:  # and the coordinator refuses a decision (signed regardless)
            team.approvers[1].reject(r.request_id)
        assert e.value.code == Code.FAILED_PRECONDITION and "is EXPIRED, not PENDING_APPROVAL" in e.value.message
    expired = {r.request_id for r in team.requester.list_sign_requests(state="expired")}
    assert {r.request_id for r in slow} <= expired


def test_a_request_that_expires_while_signing_is_refused_by_the_nodes(gc, team, gkey) -> None:
    # pools off: the fault delays a round of the full protocol (the pool path's expiry:
    # test_presign_pool.py::test_a_request_that_expires_on_its_way_to_the_signers_is_refused_by_them)
    with pools_off(gc):
        _expires_while_signing(gc, team, gkey)


def _expires_while_signing(gc, team, gkey) -> None:
    for i in range(1, N + 1):
        # 2 s TTL + the nodes' 5 s clock tolerance (clock_tolerance_s) + a margin
        fault = {"action": "delay", "protocol": "sign", "round": 2, "seconds": 7.5}
        (gc.lay.dir / "faults" / f"node-{i}.json").write_text(json.dumps(fault))
    try:
        r = team.request(gkey.key_id, b"\x77" * 32, description="slow signers", ttl_seconds=2)
    finally:
        for i in range(1, N + 1):
            (gc.lay.dir / "faults" / f"node-{i}.json").unlink(missing_ok=True)
    assert r.state == "expired" and r.signature is None
    assert "expires_at_ms: request has expired" in r.error_message
    for i in range(1, N + 1):
        assert not released(gc, i, r.request_id)
