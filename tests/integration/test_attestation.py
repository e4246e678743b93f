"""Withheld policy changes make signing stop, never succeed (policy attestations, direct pushes).

A 2-of-3 cluster whose nodes require a policy attestation at most ``MAX_AGE_S`` old. The
harness often plays a *compromised coordinator* (it holds the coordinator's certificate and
calls the nodes itself); the admins talk to the nodes directly with their own certificates.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.attestation import PolicyAttestation, PolicyHead, sign_attestation
from governance.policy import DEFAULT_SCOPE, KeyPolicy
from mpcnet.client import MpcClient, SigningTeam, cli
from mpcnet.client.identities import load_identity
from mpcnet.common.stores.audit import export_jsonl
from mpcnet.wire.mpc.v1 import node_pb2

from .conftest import coordinator_handles, running_cluster
from .govtools import approved_bundle, bundle, default_policy, now_ms, signed_change, signing_request
from .outbox_util import outbox_drained
from .relay_util import run
from .test_cluster_api import _raw_channel

N, T = 3, 2
MAX_AGE_S = 6
Code = grpc.StatusCode
DIGEST = hashlib.sha256(b"attestation tests").digest()


@pytest.fixture(scope="module")
def ac(tmp_path_factory):
    with running_cluster(tmp_path_factory, "attest-2of3", N, T, policy_max_age_s=MAX_AGE_S) as c:
        yield c


@pytest.fixture(scope="module")
def admin(ac):
    with MpcClient.from_cluster(ac.lay.dir, identity="admin1", timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def team(ac):
    with SigningTeam.from_cluster(ac.lay.dir, timeout=60) as t:
        yield t


@pytest.fixture(scope="module")
def nodes(ac):
    """The harness holds the coordinator's certificate: a compromised coordinator."""
    with coordinator_handles(ac) as hs:
        yield hs


def node_audit(ac, i: int) -> list[dict]:
    outbox_drained(ac.lay.node_dir(i))  # entries committed with their state change are appended in the background
    buf = io.StringIO()
    export_jsonl(ac.lay.node_dir(i) / "audit.db", buf)
    return [json.loads(x) for x in buf.getvalue().splitlines()]


def released(ac, i: int, request_id: str) -> bool:
    return any(e["action"] == "sign-share" and e["outcome"] == "released" and e["request_id"] == request_id for e in node_audit(ac, i))


def params(key_id: bytes, rid: str, b: bytes, *, signers=(2, 3), attestation: bytes = b"") -> node_pb2.SignParams:
    return node_pb2.SignParams(
        key_id=key_id, signers=list(signers), digest=DIGEST, request_id=rid, approval_bundle=b, policy_attestation=attestation,
    )


def start_error(nodes, node: int, p: node_pb2.SignParams) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        nodes[node].stub.StartSession(node_pb2.StartSessionRequest(session_id=os.urandom(32), sign=p), timeout=10)
    return e.value


def kind(err: grpc.RpcError) -> str:
    return dict(err.trailing_metadata() or ()).get("mpc-governance", "")


def signed_attestation(ac, heads, *, admin: str = "admin1", key=None, root: bytes | None = None, issued: int | None = None) -> bytes:
    lay = ac.lay
    att = PolicyAttestation.build(
        root or lay.governance()[0].digest(), now_ms() if issued is None else issued, admin, heads
    )
    return sign_attestation(att, key or load_identity(lay.dir, admin).signing_key).to_bytes()


def default_head(ac) -> PolicyHead:
    pol = default_policy(ac.lay)
    return PolicyHead(DEFAULT_SCOPE, pol.version, pol.digest())


# --- (1) the scenario -----------------------------------------------------------------


def test_a_withheld_change_is_refused_once_admins_reach_the_nodes_directly(ac, admin, nodes) -> None:
    """Admins removed approver2 from a key's policy; the (compromised) coordinator installed the
    change on node 1 only and asks nodes {2,3} to sign a request approved by approver1 and
    approver2. The admins' direct attestation makes {2,3} refuse as stale; their direct push
    brings the change to every node although the coordinator dropped it."""
    lay = ac.lay
    key = admin.create_key("withheld-change")
    pol = default_policy(lay)
    new = KeyPolicy(1, {n: pol.approvers[n] for n in ("approver1", "approver3")}, 2, pol.requesters, pol.ttl_seconds, pol.rate_limit)
    change = signed_change(lay, new, None, "admin1", "admin2", scope=key.key_id)
    assert nodes[1].stub.InstallPolicy(node_pb2.InstallPolicyRequest(signed_change=change.to_bytes()), timeout=10).installed

    # an admin attests what it sees (the coordinator's heads, cross-checked with the nodes')
    out = admin.attest()
    assert out["coordinator"] == "stored" and out["node-1"] == "confirmed", out
    for name in ("node-2", "node-3"):
        assert out[name].startswith(f"stale-policy: policy_attestation.heads[{key.key_id.hex()}]"), out

    old_attestation = b""  # the coordinator sends none (or an old one): the nodes keep the newest
    rid, b = approved_bundle(lay, key.key_id, DIGEST)  # approver1 + approver2 under the replaced policy
    for i in (2, 3):
        err = start_error(nodes, i, params(key.key_id, rid, b, attestation=old_attestation))
        assert err.code() == Code.FAILED_PRECONDITION and kind(err) == "stale-policy", err.details()
        assert f"sign.policy_attestation.heads[{key.key_id.hex()}]" in err.details(), err.details()
    assert not released(ac, 2, rid) and not released(ac, 3, rid)

    # the admins push the signed change to every node directly; the coordinator is not involved
    pushed = admin.push_policy(key.key_id, history=[change])
    assert pushed == {"node-1": "already", "node-2": "installed 1", "node-3": "installed 1"}, pushed
    for i in (2, 3):
        err = start_error(nodes, i, params(key.key_id, rid, b))
        assert err.code() == Code.FAILED_PRECONDITION and kind(err) == "stale-policy"
        assert "request was made under another policy" in err.details(), err.details()
        installs = [e for e in node_audit(ac, i) if e["action"] == "policy-install" and e["outcome"] == "installed"]
        assert installs[-1]["actor"] == "admin1"  # who pushed is audited

    # under the new policy (approver1 + approver3) nodes {2,3} sign
    req = signing_request(lay, key.key_id, DIGEST, policy=new)
    final = run(nodes, os.urandom(32), [2, 3], sign=params(key.key_id, req.request_id, bundle(lay, req, "approver1", "approver3")))
    assert all(isinstance(r, node_pb2.StepResponse) and r.finished for r in final.values()), final


# --- (2) without any push: signing stops within the bound ---------------------------------------


def test_signing_stops_when_the_newest_attestation_is_too_old_and_resumes_after_attest(ac, admin, team, capsys) -> None:
    key = admin.create_key("attestation-age")
    admin.attest()
    attested = time.monotonic()
    assert team.sign(key.key_id, DIGEST).der
    time.sleep(max(0.0, attested + MAX_AGE_S + 1.0 - time.monotonic()))

    r = team.request(key.key_id, DIGEST)  # the coordinator holds no newer attestation to send
    assert r.state == "failed" and r.error_code == "FAILED_PRECONDITION", r.as_dict()
    assert "sign.policy_attestation.issued_at_ms" in r.error_message and "mpc policy attest" in r.error_message, r.error_message
    refused = [e for i in (1, 2, 3) for e in node_audit(ac, i) if e["action"] == "sign-start" and e["outcome"] == "refused"
               and "policy_attestation.issued_at_ms" in e["details"].get("reason", "")]
    assert refused

    assert cli.main(["--cluster", str(ac.lay.dir), "--as", "admin2", "policy", "attest", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"coordinator": "stored", "node-1": "confirmed", "node-2": "confirmed", "node-3": "confirmed"}, report
    assert team.sign(key.key_id, DIGEST).der

    assert cli.main(["--cluster", str(ac.lay.dir), "--as", "admin2", "policy", "push", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"node-1": "already", "node-2": "already", "node-3": "already"}


# --- (3) attestations that must not count -----------------------------------------------------


def test_forged_foreign_future_and_newer_head_attestations_are_refused(ac, admin, nodes) -> None:
    lay = ac.lay
    key = admin.create_key("bad-attestations")
    admin.attest()
    dh = default_head(ac)
    outsider = Ed25519PrivateKey.generate()
    cases = [
        ("malformed", b"\x00" * 16, Code.INVALID_ARGUMENT, "sign.policy_attestation.tag"),
        ("forged", signed_attestation(ac, [dh], key=outsider), Code.PERMISSION_DENIED,
         "sign.policy_attestation.signature: signature by admin 'admin1' does not verify"),
        ("not an admin", signed_attestation(ac, [dh], admin="approver1"), Code.PERMISSION_DENIED,
         "sign.policy_attestation.attestation.admin: 'approver1' is not an admin"),
        ("foreign", signed_attestation(ac, [dh], root=hashlib.sha256(b"another cluster").digest()), Code.PERMISSION_DENIED,
         "sign.policy_attestation.attestation.governance_root: names another governance root"),
        ("future", signed_attestation(ac, [dh], issued=now_ms() + 3_600_000), Code.FAILED_PRECONDITION,
         "sign.policy_attestation.attestation.issued_at_ms: issued 3"),
    ]
    for name, att, code, text in cases:
        rid, b = approved_bundle(lay, key.key_id, DIGEST)
        err = start_error(nodes, 2, params(key.key_id, rid, b, attestation=att))
        assert err.code() == code and text in err.details(), (name, err.code(), err.details())
    # pushed directly by an admin: refused and audited
    with _raw_channel(ac, lay.endpoints()["node-3"], "admin2") as ch:
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/mpc.v1.Node/InstallPolicyAttestation")(
                node_pb2.InstallPolicyAttestationRequest(attestation=cases[1][1]).SerializeToString(), timeout=10
            )
    assert e.value.code() == Code.PERMISSION_DENIED and "attestation.signature" in e.value.details()
    assert any(x["action"] == "policy-attest" and x["outcome"] == "refused" and x["actor"] == "admin2" for x in node_audit(ac, 3))

    # a valid attestation naming a newer head than the node holds: the node is stale
    newer = signed_attestation(ac, [dh, PolicyHead(key.key_id, 1, hashlib.sha256(b"a policy node 2 lacks").digest())])
    rid, b = approved_bundle(lay, key.key_id, DIGEST)
    err = start_error(nodes, 2, params(key.key_id, rid, b, attestation=newer))
    assert err.code() == Code.FAILED_PRECONDITION and kind(err) == "stale-policy"
    kid = key.key_id.hex()
    assert f"sign.policy_attestation.heads[{kid}]: node-2: the attestation names {kid} v1" in err.details(), err.details()
    assert not any(released(ac, i, rid) for i in (1, 2, 3))
    out = admin.attest()  # a newer, correct attestation repairs it
    assert out["node-2"] == "confirmed", out
    rid, b = approved_bundle(lay, key.key_id, DIGEST)
    final = run(nodes, os.urandom(32), [1, 2], sign=params(key.key_id, rid, b, signers=(1, 2)))
    assert all(isinstance(r, node_pb2.StepResponse) and r.finished for r in final.values()), final


# --- (4) roles ---------------------------------------------------------------------------------


def test_only_admins_and_the_coordinator_reach_the_node_policy_rpcs(ac) -> None:
    eps = ac.lay.endpoints()
    policy_rpcs = {
        "InstallPolicy": node_pb2.InstallPolicyRequest(), "InstallPolicyAttestation": node_pb2.InstallPolicyAttestationRequest(),
        "GetPolicies": node_pb2.GetPoliciesRequest(),
    }
    for who in ("requester1", "approver1", "auditor1", "client", "node-1"):
        with _raw_channel(ac, eps["node-1"], who) as ch:
            for m, req in policy_rpcs.items():
                with pytest.raises(grpc.RpcError) as e:
                    ch.unary_unary(f"/mpc.v1.Node/{m}")(req.SerializeToString(), timeout=10)
                assert e.value.code() == Code.PERMISSION_DENIED and "needs role coordinator or admin" in e.value.details(), (who, m)
    with _raw_channel(ac, eps["node-1"], "admin3") as ch:
        resp = node_pb2.GetPoliciesResponse.FromString(
            ch.unary_unary("/mpc.v1.Node/GetPolicies")(node_pb2.GetPoliciesRequest().SerializeToString(), timeout=10)
        )
        assert resp.policies and resp.policy_attestation
        for m, req in (("StartSession", node_pb2.StartSessionRequest()), ("CommitKey", node_pb2.CommitKeyRequest()),
                       ("Step", node_pb2.StepRequest())):
            with pytest.raises(grpc.RpcError) as e:
                ch.unary_unary(f"/mpc.v1.Node/{m}")(req.SerializeToString(), timeout=10)
            assert e.value.code() == Code.PERMISSION_DENIED and "needs role coordinator" in e.value.details(), m
            assert "or admin" not in e.value.details()


def test_the_admin_completing_a_change_pushes_it_and_attests_directly(ac, admin) -> None:
    key = admin.create_key("completed-change")
    p = admin.propose_policy(admin.next_policy(key.key_id, approval_quorum=3), key_id=key.key_id)
    assert p.state == "pending" and p.pushed is None
    with MpcClient.from_cluster(ac.lay.dir, identity="admin2", timeout=60) as admin2:
        done = admin2.approve_policy(p.proposal_id)
    assert done.state == "applied" and done.pushed is not None
    assert sorted(done.pushed) == ["coordinator", "node-1", "node-2", "node-3"], done.pushed
    for name in ("node-1", "node-2", "node-3"):  # the coordinator synced first: "already"
        assert done.pushed[name] in ("already; attestation confirmed", "installed 1; attestation confirmed"), done.pushed
    assert done.pushed["coordinator"] == "attestation stored", done.pushed
