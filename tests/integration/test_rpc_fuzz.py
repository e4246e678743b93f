"""Fuzz every RPC of both services (Coordinator and Node, enumerated from the proto descriptors)
against a real 2-of-3 cluster, as every role: random bytes as the serialized request, and valid
messages with random and hostile field values (see :mod:`tests.integration.rpcfuzz`).

No call may be answered INTERNAL or UNKNOWN (PERMISSION_DENIED, INVALID_ARGUMENT, NOT_FOUND, ...
are all fine), a node's error text is one printable line of bounded length, no server may log an
internal error or a traceback, and every server still answers a normal call
afterwards. The CI form makes ~1,500 calls; ``MPCNET_FUZZ_CALLS=20000`` runs a large one and
``MPCNET_FUZZ_SEED=N`` replays a run (the seed is printed in every failure).

The named tests below the fuzzer are its findings, each with its minimal input.
"""

from __future__ import annotations

import io
import json
import os
import random
import time
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from mpc_node.service import MAX_ENVELOPES_PER_PARTY
from mpcnet.client import MpcClient
from mpcnet.common.pki import channel_credentials
from mpcnet.common.stores.audit import export_jsonl
from mpcnet.wire.mpc.v1 import common_pb2, coordinator_pb2, governance_pb2, node_pb2

from .conftest import coordinator_handles, running_cluster
from .govtools import approved_bundle
from .outbox_util import outbox_drained
from .rpcfuzz import SERVICES, Fuzz, Rpc, call, rpcs

N, T = 3, 2
Code = grpc.StatusCode
NEVER = {Code.INTERNAL, Code.UNKNOWN}
CALLS = int(os.environ.get("MPCNET_FUZZ_CALLS", "1500"))
SEED = int(os.environ.get("MPCNET_FUZZ_SEED", "0")) or random.SystemRandom().randrange(1, 2**32)
TIME_BUDGET_S = max(25.0, CALLS / 50)  # the fuzzer stops early (and says so) past this
TIMEOUT_S = 5.0
STREAM_TIMEOUT_S = 0.5
DIGEST = bytes(range(7, 39))
MAX_DETAILS = 1500  # an error quotes at most a short escaped prefix of what it was sent (nodes and coordinator)
COORDINATOR_ROLES = ("admin1", "requester1", "approver1", "auditor1", "officer1")
NODE_CALLERS = ("coordinator", "admin1", "requester1")


@pytest.fixture(scope="module")
def fc(tmp_path_factory):
    with running_cluster(tmp_path_factory, "fuzz-2of3", N, T) as c:
        yield c


@pytest.fixture(scope="module")
def fkey(fc):
    with MpcClient.from_cluster(fc.lay.dir, identity="admin1", timeout=60) as c:
        return c.create_key("fuzz")


@pytest.fixture(scope="module")
def channels(fc):
    """(service, caller) -> channel: the coordinator as each role, each node as the coordinator,
    an admin and a requester."""
    from mpcnet.client.identities import identity_dir
    from mpcnet.common.pki import CertPaths

    lay = fc.lay
    eps = lay.endpoints()

    def creds(who: str) -> grpc.ChannelCredentials:
        d = identity_dir(lay.dir, who)
        cert = CertPaths(d / f"{who}.pem", d / f"{who}.key") if d.is_dir() else lay.cert(who)
        return channel_credentials(cert, lay.ca.cert)

    out: dict[tuple[str, str], grpc.Channel] = {}
    for who in COORDINATOR_ROLES:
        out[("coordinator", who)] = grpc.secure_channel(eps["coordinator"], creds(who))
    for i in range(1, N + 1):
        for who in NODE_CALLERS:
            out[(f"node-{i}", who)] = grpc.secure_channel(eps[f"node-{i}"], creds(who))
    yield out
    for ch in out.values():
        ch.close()


@pytest.fixture(scope="module")
def corpus(fc, fkey) -> tuple[dict[str, list[Any]], dict[str, list[Message]]]:
    """(hints, templates): plausible values per field name, and meaningful requests per RPC name
    (a real key, an approved bundle, a pending request, a proposal, the held attestation, ...),
    so that fuzzed calls get past the first checks into the deeper ones."""
    from governance.approval import Decision, sign_approval
    from governance.policy import sign_policy_change
    from mpcnet.client.identities import load_identity

    lay = fc.lay
    rid, bundle = approved_bundle(lay, fkey.key_id, DIGEST)
    with MpcClient.from_cluster(lay.dir, identity="requester1", timeout=30) as r:
        pending = r.submit_sign_request(fkey.key_id, DIGEST, description="fuzz target")
        other = r.submit_sign_request(fkey.key_id, DIGEST, path=[0, 1], description="fuzz decision target")
    approver = load_identity(lay.dir, "approver1")
    approval = sign_approval(other.request, "approver1", approver.signing_key, Decision.APPROVE)
    with MpcClient.from_cluster(lay.dir, identity="admin1", timeout=30) as admin:
        proposal = admin.propose_policy(admin.next_policy(fkey.key_id), key_id=fkey.key_id, push=False)
        attestation = bytes(admin._stub.ListPolicies(coordinator_pb2.ListPoliciesRequest(), timeout=10).policy_attestation)
    change = proposal.signed_change
    again = sign_policy_change(change.change, "admin1", load_identity(lay.dir, "admin1").signing_key)
    initial = lay.governance()[1].to_bytes()
    hints: dict[str, list[Any]] = {
        "key_id": [fkey.key_id], "public_key": [fkey.public_key], "digest": [DIGEST],
        "request_id": [rid, pending.request_id], "approval_bundle": [bundle], "component": ["coordinator", "node-1", "node-2"],
        "signers": [[1, 2], [2, 3], [1, 2, 3]], "threshold": [T], "parties": [N], "approver": ["approver1"],
        "admin": ["admin1"], "attempt": [1, 2, 3], "derivation_path": [[], [0, 1]], "proposal_id": [proposal.proposal_id],
        "session_id": [lambda rng: rng.randbytes(32)], "key_label": [b"fuzz label"], "label": ["fuzz label"],
        "attestation": [attestation], "policy_attestation": [attestation], "signed_change": [change.to_bytes(), initial],
        "message": [b"", b"fuzz message"], "taproot_merkle_root": [b"", DIGEST],  # issue 16
    }
    sign = node_pb2.SignParams(
        key_id=fkey.key_id, signers=[1, 2], digest=DIGEST, request_id=rid, approval_bundle=bundle, policy_attestation=attestation
    )
    templates: dict[str, list[Message]] = {
        "CreateKey": [coordinator_pb2.CreateKeyRequest(label="fuzz key", request_id="fuzz-create")],
        "GetKey": [coordinator_pb2.GetKeyRequest(key_id=fkey.key_id)],
        "GetRequest": [coordinator_pb2.GetRequestRequest(request_id="fuzz-create")],
        "SubmitSignRequest": [coordinator_pb2.SubmitSignRequestRequest(
            key_id=fkey.key_id, digest=DIGEST, derivation_path=[0, 7], description="fuzzed", ttl_seconds=600),
            coordinator_pb2.SubmitSignRequestRequest(  # issue 16: an ed25519 key's fields on an ECDSA key: refused
                key_id=fkey.key_id, message=b"fuzzed message", taproot_merkle_root=DIGEST, description="fuzzed")],
        "DecideSignRequest": [coordinator_pb2.DecideSignRequestRequest(
            request_id=other.request_id, approver="approver1", decision=coordinator_pb2.DECISION_APPROVE,
            signature=approval.signature)],
        "GetSignRequest": [coordinator_pb2.GetSignRequestRequest(request_id=pending.request_id)],
        "WatchSignRequest": [coordinator_pb2.GetSignRequestRequest(request_id=pending.request_id)],
        "ListSignRequests": [coordinator_pb2.ListSignRequestsRequest(key_id=fkey.key_id, limit=3)],
        "GetPolicy": [coordinator_pb2.GetPolicyRequest(key_id=fkey.key_id)],
        "GetPolicyHistory": [coordinator_pb2.GetPolicyHistoryRequest(key_id=fkey.key_id)],
        "ProposePolicyChange": [coordinator_pb2.ProposePolicyChangeRequest(signed_change=change.to_bytes())],
        "ApprovePolicyChange": [coordinator_pb2.ApprovePolicyChangeRequest(
            proposal_id=proposal.proposal_id, admin="admin1", signature=again.signature)],
        "GetPolicyProposal": [coordinator_pb2.GetPolicyProposalRequest(proposal_id=proposal.proposal_id)],
        "SubmitPolicyAttestation": [coordinator_pb2.SubmitPolicyAttestationRequest(attestation=attestation)],
        "GetAuditLog": [
            coordinator_pb2.GetAuditLogRequest(component="node-1", after_seq=1, limit=3),
            governance_pb2.AuditLogRequest(after_seq=1, limit=3),
        ],
        "StartSession": [
            node_pb2.StartSessionRequest(session_id=bytes(32), sign=sign),
            node_pb2.StartSessionRequest(session_id=bytes(32), dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"k")),
        ],
        "ReserveSigning": [node_pb2.ReserveSigningRequest(
            key_id=fkey.key_id, request_id=rid, attempt=1, signers=[1, 2], session_id=bytes(32), approval_bundle=bundle,
            digest=DIGEST)],
        "CommitKey": [node_pb2.CommitKeyRequest(key_id=fkey.key_id, public_key=fkey.public_key)],
        "DiscardKey": [node_pb2.DiscardKeyRequest(key_id=fkey.key_id)],
        "InstallPolicy": [node_pb2.InstallPolicyRequest(signed_change=initial)],
        "InstallPolicyAttestation": [node_pb2.InstallPolicyAttestationRequest(attestation=attestation)],
        "AbortSession": [node_pb2.AbortSessionRequest(session_id=bytes(32), reason="fuzz")],
        "Step": [node_pb2.StepRequest(session_id=bytes(32), round=1)],
        # issue 14: presignature pools (mpc_node/presign.py); no pool exists here, so SignPresigned
        # gets past the field checks to presig-unknown, and a presign session starts
        "SignPresigned": [node_pb2.SignPresignedRequest(
            presig_id=bytes(32), key_id=fkey.key_id, signers=[1, 2], digest=DIGEST, request_id=rid, approval_bundle=bundle,
            policy_attestation=attestation, attempt=1)],
        "ListPresignatures": [node_pb2.ListPresignaturesRequest(key_id=fkey.key_id), node_pb2.ListPresignaturesRequest()],
        "DiscardPresignatures": [node_pb2.DiscardPresignaturesRequest(key_id=fkey.key_id, presig_ids=[bytes(32)], reason="fuzz")],
        # issue 16: FROST (mpc_node/frost_sign.py); the fuzz key is an ECDSA key, so MakeNonces gets to
        # the scheme refusal and SignSchnorr past the field checks to nonce-unknown
        "MakeNonces": [node_pb2.MakeNoncesRequest(key_id=fkey.key_id, epoch=0, count=2)],
        "SignSchnorr": [node_pb2.SignSchnorrRequest(
            key_id=fkey.key_id, epoch=0, request_id=rid, approval_bundle=bundle, policy_attestation=attestation, message=DIGEST,
            commitments=[node_pb2.NonceCommitment(nonce_id=bytes(32), signer=j, hiding=bytes(33), binding=bytes(33)) for j in (1, 2)],
            nonce_id=bytes(32), attempt=1, session_id=bytes(32))],
        "DiscardNonces": [node_pb2.DiscardNoncesRequest(key_id=fkey.key_id, nonce_ids=[bytes(32)], reason="fuzz")],
    }
    templates["StartSession"].append(node_pb2.StartSessionRequest(
        session_id=bytes(32), presign=node_pb2.PresignParams(key_id=fkey.key_id, signers=[1, 2], count=2)))
    templates["StartSession"].append(node_pb2.StartSessionRequest(
        session_id=bytes(32), dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"k", scheme="ed25519")))
    return hints, templates


def node_audit(fc, i: int) -> list[dict[str, Any]]:
    outbox_drained(fc.lay.node_dir(i))  # entries committed with their state change are appended in the background
    buf = io.StringIO()
    export_jsonl(fc.lay.node_dir(i) / "audit.db", buf)
    return [json.loads(x) for x in buf.getvalue().splitlines()]


def _targets(service: str) -> list[str]:
    return ["coordinator"] if service == "mpc.v1.Coordinator" else [f"node-{i}" for i in range(1, N + 1)]


def test_fuzz_every_rpc_of_both_services_never_internal(fc, fkey, channels, corpus) -> None:
    hints, templates = corpus
    print(f"fuzz: MPCNET_FUZZ_SEED={SEED} MPCNET_FUZZ_CALLS={CALLS}")  # shown with any failure (captured output)
    fuzz = Fuzz(SEED, hints)
    rng = fuzz.rng
    every = [r for s in SERVICES for r in rpcs(s)]
    assert {r.service for r in every} == {"mpc.v1.Coordinator", "mpc.v1.Node"} and len(every) >= 30
    seen: dict[str, set[Code]] = {r.path: set() for r in every}
    bad: list[str] = []
    start = time.monotonic()
    made = 0
    for made in range(1, CALLS + 1):
        rpc: Rpc = every[(made - 1) % len(every)] if made <= 2 * len(every) else rng.choice(every)
        target = rng.choice(_targets(rpc.service))
        who = rng.choice(COORDINATOR_ROLES if target == "coordinator" else NODE_CALLERS)
        fits = [t for t in templates.get(rpc.name, ()) if t.DESCRIPTOR is rpc.request.DESCRIPTOR]
        k = rng.random()
        mode = "raw" if k < 0.3 else "mutated" if k < 0.65 and fits else "structured"
        if mode == "raw":
            payload = fuzz.raw(rpc)
        elif mode == "mutated":
            template = rng.choice(fits)
            if "session_id" in template.DESCRIPTOR.fields_by_name:  # a fresh session, mostly
                template = type(template).FromString(template.SerializeToString())
                template.session_id = rng.randbytes(32)  # type: ignore[attr-defined]
            payload = fuzz.mutated(template)
        else:
            payload = fuzz.structured(rpc)
        code, details = call(channels[(target, who)], rpc, payload, STREAM_TIMEOUT_S if rpc.streaming else TIMEOUT_S)
        seen[rpc.path].add(code)
        if code != Code.OK and not (details.isprintable() and len(details) <= MAX_DETAILS):
            bad.append(f"call {made}: {rpc.path} on {target} as {who} ({mode}): {code.name}: unescaped or long details "
                       f"({len(details)} characters): {details[:300]!r}")
        if code in NEVER:
            bad.append(
                f"call {made}: {rpc.path} on {target} as {who} ({mode}, {len(payload)} bytes {payload[:80].hex()}...): "
                f"{code.name}: {details[:300]!r}"
            )
        if time.monotonic() - start > TIME_BUDGET_S:
            print(f"fuzz: time budget of {TIME_BUDGET_S:.0f}s reached after {made} of {CALLS} calls")
            break
    elapsed = time.monotonic() - start
    print(f"fuzz: seed {SEED}: {made} calls in {elapsed:.1f}s; codes per RPC: "
          + "; ".join(f"{p.rsplit('/', 1)[1]}={','.join(sorted(c.name for c in cs))}" for p, cs in sorted(seen.items())))
    assert not bad, f"MPCNET_FUZZ_SEED={SEED}: {len(bad)} bad answers:\n" + "\n".join(bad[:40])
    assert all(seen.values()), "some RPC was never called"
    # the servers are healthy afterwards: a normal call works on each
    with MpcClient.from_cluster(fc.lay.dir, identity="admin1", timeout=30) as admin:
        assert any(k.key_id == fkey.key_id for k in admin.list_keys())
        status = admin._stub.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=10)
        assert [n.index for n in status.nodes] == list(range(1, N + 1))
    with coordinator_handles(fc) as hs:
        for i, h in hs.items():
            assert h.stub.GetInfo(node_pb2.GetInfoRequest(), timeout=10).index == i
    for name in fc.lay.names():
        log = fc.lay.log(name).read_text(errors="replace")
        assert "internal error" not in log and "Traceback" not in log, (SEED, name, log[-3000:])


STEP_SESSIONS = max(20, CALLS // 50)


def test_fuzz_step_deliveries_into_live_sessions(fc, fkey, corpus) -> None:
    """The deliveries a compromised relay can make into *live* DKG and signing sessions: the
    round's real envelopes with one field of the request or of one envelope randomized, cut or
    bit-flipped. The session may abort (ABORTED naming what was wrong) or refuse the delivery,
    never INTERNAL/UNKNOWN, and never with raw or unbounded text."""
    from .relay_util import route, start, step

    hints, _ = corpus
    print(f"step fuzz: MPCNET_FUZZ_SEED={SEED} ({STEP_SESSIONS} sessions)")  # shown with any failure
    fuzz = Fuzz(SEED + 1, hints)
    rng = fuzz.rng
    bad: list[str] = []
    codes: set[Code] = set()
    with coordinator_handles(fc) as hs:
        for n in range(STEP_SESSIONS):
            sid = rng.randbytes(32)
            if rng.random() < 0.5:
                among, params = [1, 2, 3], {"dkg": node_pb2.DkgParams(threshold=T, parties=N, key_label=b"step fuzz")}
            else:
                rid, bundle = approved_bundle(fc.lay, fkey.key_id, DIGEST)
                among = [1, 2]
                params = {"sign": node_pb2.SignParams(
                    key_id=fkey.key_id, signers=among, digest=DIGEST, request_id=rid, approval_bundle=bundle,
                    policy_attestation=hints["attestation"][0],
                )}
            resps = start(hs, sid, among, **params)
            for _ in range(rng.randint(0, 1)):  # deliver round 1 honestly first, sometimes
                honest = step(hs, sid, next(iter(resps.values())).round, route(resps, among))
                assert all(isinstance(r, node_pb2.StepResponse) for r in honest.values()), honest
                resps = honest  # type: ignore[assignment]
            rnd = next(iter(resps.values())).round
            k = rng.choice(among)
            req = node_pb2.StepRequest(session_id=sid, round=rnd, envelopes=route(resps, among)[k])
            if req.envelopes and rng.random() < 0.6:
                j = rng.randrange(len(req.envelopes))
                req.envelopes[j].CopyFrom(common_pb2.Envelope.FromString(fuzz.mutated(req.envelopes[j])))
                payload = req.SerializeToString()
            else:
                payload = fuzz.mutated(req)
            rpc = next(r for r in rpcs(SERVICES[1]) if r.name == "Step")
            code, details = call(hs[k].channel, rpc, payload, 20.0)
            codes.add(code)
            if code in NEVER or (code != Code.OK and not (details.isprintable() and len(details) <= MAX_DETAILS)):
                bad.append(f"session {n} (round {rnd}, node {k}): {code.name}: {details[:300]!r} ({payload[:200].hex()})")
            for i in among:
                hs[i].stub.AbortSession(node_pb2.AbortSessionRequest(session_id=sid, reason="fuzz"), timeout=5)
    print(f"step fuzz: seed {SEED + 1}: {STEP_SESSIONS} sessions; codes {sorted(c.name for c in codes)}")
    assert not bad, f"MPCNET_FUZZ_SEED={SEED}:\n" + "\n".join(bad[:20])
    for i in range(1, N + 1):
        log = fc.lay.log(f"node-{i}").read_text(errors="replace")
        assert "internal error" not in log and "Traceback" not in log and "unexpected" not in log, log[-3000:]


# --- malformed messages: INVALID_ARGUMENT naming the request type, on every RPC ---------------

NOT_PROTOBUF = (
    b"\x0a\xff\xff\xff\xff\x0f",  # field 1, length-delimited, absurd length
    b"\x0f",  # field 1 with wire type 7 (none)
    b"\x08" + b"\xff" * 11,  # a varint longer than 10 bytes
    b"\x0b\x14",  # a group start (field 1) and the end of another group (field 2)
)


def _caller_for(rpc: Rpc) -> str:
    from coordinator.roles import allowed

    if rpc.service == "mpc.v1.Node":
        return "coordinator"
    return {
        "admin": "admin1", "requester": "requester1", "approver": "approver1", "auditor": "auditor1", "officer": "officer1",
    }[allowed(rpc.name)[0]]


def _string_field(rpc: Rpc) -> int | None:
    """The number of a string field of the request (at the top level), if it has one."""
    from google.protobuf.descriptor import FieldDescriptor

    for f in rpc.request.DESCRIPTOR.fields:
        if f.type == FieldDescriptor.TYPE_STRING and not f.is_repeated:
            return int(f.number)
    return None


def test_bytes_that_are_not_the_request_type_are_invalid_argument_on_every_rpc(fc, channels) -> None:
    """gRPC answers INTERNAL ("Exception deserializing request!") when a deserializer raises:
    every RPC of both services, unary and streaming, answers INVALID_ARGUMENT naming its request
    type instead, including a string field holding invalid UTF-8. So does the standard health
    service of both servers (found while hunting siblings: it answered INTERNAL)."""
    from grpc_health.v1 import health_pb2

    health = [r for r in rpcs(health_pb2.DESCRIPTOR.services_by_name["Health"]) if r.name in ("Check", "Watch")]
    assert len(health) == 2
    cases = [(r, "coordinator" if r.service == "mpc.v1.Coordinator" else "node-2") for s in SERVICES for r in rpcs(s)]
    cases += [(r, target) for r in health for target in ("coordinator", "node-2")]
    for rpc, target in cases:
        who = _caller_for(rpc) if rpc.service.startswith("mpc.") else ("auditor1" if target == "coordinator" else "coordinator")
        ch = channels[(target, who)]
        bad = list(NOT_PROTOBUF)
        num = _string_field(rpc)
        if num is not None:
            bad.append(bytes([(num << 3) | 2, 3]) + b"a\xffb")
        for data in bad:
            code, details = call(ch, rpc, data, 5.0)
            assert (code, details) == (
                Code.INVALID_ARGUMENT, f"request: not a valid {rpc.request.DESCRIPTOR.full_name} protobuf message"
            ), (rpc.path, data, code, details)
    # the health service still works (and Watch still streams)
    from grpc_health.v1 import health_pb2_grpc

    for target, who in (("coordinator", "auditor1"), ("node-2", "coordinator")):
        stub = health_pb2_grpc.HealthStub(channels[(target, who)])
        assert stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        watch = stub.Watch(health_pb2.HealthCheckRequest(), timeout=5)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()


# --- findings of the fuzzer, each with its minimal input --------------------------------------

def test_node_refusal_audit_of_a_long_escaped_request_id_is_not_internal(fc, fkey, channels) -> None:
    """Found by the fuzzer: ReserveSigning (and StartSession) with a request id of 200 invisible
    characters was refused, but the refusal's audit entry quoted the id escaped *after* cutting
    it to 200 characters (1,200 escaped characters, more than an audit detail holds), so writing
    the audit entry raised and the caller got INTERNAL. The entry now quotes a short escaped
    prefix; the refusal is INVALID_ARGUMENT naming the field and is audited."""
    pb = node_pb2
    nasty = "\u202e" * 200
    before = len(node_audit(fc, 1))
    with coordinator_handles(fc) as hs:
        for call_it, field in (
            (lambda: hs[1].stub.ReserveSigning(pb.ReserveSigningRequest(request_id=nasty, key_id=b"\x01"), timeout=10), "key_id"),
            (lambda: hs[1].stub.ReserveSigning(
                pb.ReserveSigningRequest(request_id=nasty, key_id=fkey.key_id, digest=DIGEST, session_id=bytes(32)), timeout=10
            ), "request_id"),
            (lambda: hs[1].stub.StartSession(pb.StartSessionRequest(session_id=os.urandom(32), sign=pb.SignParams(
                key_id=fkey.key_id, digest=DIGEST, request_id=nasty, signers=[1, 2])), timeout=10), "sign.request_id"),
        ):
            with pytest.raises(grpc.RpcError) as e:
                call_it()
            assert e.value.code() == Code.INVALID_ARGUMENT and e.value.details().startswith(field + ": "), e.value
            assert e.value.details().isprintable() and len(e.value.details()) < 400, e.value.details()
    refusals = [e for e in node_audit(fc, 1)[before:] if e["outcome"] == "refused"]
    assert [e["action"] for e in refusals] == ["sign-reserve", "sign-reserve", "sign-start"]
    for e in refusals:
        assert e["request_id"] == "" and e["details"]["request"].startswith("'\\u202e") and len(e["details"]["request"]) < 400
        assert e["details"]["request"].isascii() and e["details"]["request"].isprintable()


# --- every field of the Node RPCs is checked before work --------------------------------------

def test_node_abort_reason_is_checked_caller_text(fc) -> None:
    """AbortSession's reason follows governance.text (no control, format or separator character,
    at most 500 characters): refused with INVALID_ARGUMENT naming ``reason``, nothing dropped."""
    with coordinator_handles(fc) as hs:
        sid = os.urandom(32)
        dkg = node_pb2.DkgParams(threshold=T, parties=N, key_label=b"abort-me")
        hs[3].stub.StartSession(node_pb2.StartSessionRequest(session_id=sid, dkg=dkg), timeout=20)
        for bad in ("two\nlines", "a\x00b", "\x1b[2J", "x\u202ey", "\u2028", "r" * 501):
            with pytest.raises(grpc.RpcError) as e:
                hs[3].stub.AbortSession(node_pb2.AbortSessionRequest(session_id=sid, reason=bad), timeout=10)
            assert e.value.code() == Code.INVALID_ARGUMENT and e.value.details().startswith("reason: "), (bad, e.value)
        # nothing was dropped by the refused calls: the session still exists
        assert hs[3].stub.AbortSession(node_pb2.AbortSessionRequest(session_id=sid, reason="done, r" * 5), timeout=10).existed


def test_node_bounds_repeated_and_bytes_fields_before_work(fc, fkey) -> None:
    """Repeated fields and governance blobs have bounds, checked before any work; a refused Step
    leaves its session alive (a later, correct delivery still works)."""
    big = b"\x00" * ((1 << 20) + 1)
    with coordinator_handles(fc) as hs:
        sid = os.urandom(32)
        dkg = node_pb2.DkgParams(threshold=T, parties=N, key_label=b"bounds")
        hs[2].stub.StartSession(node_pb2.StartSessionRequest(session_id=sid, dkg=dkg), timeout=20)
        env = common_pb2.Envelope(session_id=sid, round=1, sender=1)
        cases = [
            (hs[2].stub.Step, node_pb2.StepRequest(session_id=sid, round=1, envelopes=[env] * (MAX_ENVELOPES_PER_PARTY * N + 1)),
             "envelopes"),
            (hs[2].stub.Step, node_pb2.StepRequest(session_id=sid, round=1, reservation_receipts=[b"r"] * (N + 1)),
             "reservation_receipts"),
            (hs[2].stub.Step, node_pb2.StepRequest(session_id=sid, round=1, reservation_receipts=[big]), "reservation_receipts[0]"),
            (hs[2].stub.StartSession, node_pb2.StartSessionRequest(session_id=os.urandom(32), sign=node_pb2.SignParams(
                key_id=fkey.key_id, digest=DIGEST, request_id="r1", signers=[1, 2, 3, 1])), "sign.signers"),
            (hs[2].stub.StartSession, node_pb2.StartSessionRequest(session_id=os.urandom(32), sign=node_pb2.SignParams(
                key_id=fkey.key_id, digest=DIGEST, request_id="r1", signers=[1, 2], approval_bundle=big)), "sign.approval_bundle"),
            (hs[2].stub.ReserveSigning, node_pb2.ReserveSigningRequest(
                key_id=fkey.key_id, digest=DIGEST, session_id=sid, request_id="r1", attempt=1, signers=[1, 2, 3, 1]), "signers"),
            (hs[2].stub.ReserveSigning, node_pb2.ReserveSigningRequest(
                key_id=fkey.key_id, digest=DIGEST, session_id=sid, request_id="r1", attempt=1, approval_bundle=big),
             "approval_bundle"),
        ]
        for fn, req, field in cases:
            with pytest.raises(grpc.RpcError) as e:
                fn(req, timeout=20)
            assert e.value.code() == Code.INVALID_ARGUMENT and e.value.details().startswith(field + ": "), (field, e.value)
        # the refused deliveries changed nothing: the session is still alive and expects round 1
        with pytest.raises(grpc.RpcError) as e:
            hs[2].stub.Step(node_pb2.StepRequest(session_id=sid, round=2), timeout=20)
        assert e.value.code() == Code.FAILED_PRECONDITION and "expects round-1" in e.value.details(), e.value


@pytest.mark.parametrize("label", ["\ue000", "a\u0378", "\U000e0001tag", "\u00adsoft"])
def test_node_key_label_follows_the_one_text_rule(fc, label: str) -> None:
    """DkgParams.key_label gets governance.text's rule, the one the coordinator applies: private
    use, unassigned and format characters are refused as well as controls."""
    with coordinator_handles(fc) as hs:
        dkg = node_pb2.DkgParams(threshold=T, parties=N, key_label=label.encode())
        with pytest.raises(grpc.RpcError) as e:
            hs[1].stub.StartSession(node_pb2.StartSessionRequest(session_id=os.urandom(32), dkg=dkg), timeout=20)
    assert e.value.code() == Code.INVALID_ARGUMENT and e.value.details().startswith("dkg.key_label: "), e.value




@pytest.mark.parametrize("label", ["\ue000", "a\u0378"])
def test_a_label_the_nodes_refuse_fails_the_keygen_cleanly(fc, label: str) -> None:
    """A label that the coordinator let through but the nodes refuse (private use, unassigned:
    the coordinator's older rule knew only controls and format characters) ends the keygen
    INVALID_ARGUMENT naming the label, leaves no request RUNNING and creates no key."""
    rid = f"lbl-{ord(label[-1]):x}"
    with MpcClient.from_cluster(fc.lay.dir, identity="admin1", timeout=60) as admin:
        before = {k.key_id for k in admin.list_keys()}
        with pytest.raises(grpc.RpcError) as e:
            admin._stub.CreateKey(coordinator_pb2.CreateKeyRequest(label=label, request_id=rid), timeout=60)
        assert e.value.code() == Code.INVALID_ARGUMENT and "label: " in e.value.details(), e.value
        assert e.value.details().isprintable()
        try:
            status = admin._stub.GetRequest(coordinator_pb2.GetRequestRequest(request_id=rid), timeout=10)
            assert status.state == coordinator_pb2.REQUEST_STATE_FAILED, status
        except grpc.RpcError as g:
            assert g.code() == Code.NOT_FOUND, g  # refused before a request was recorded
        assert {k.key_id for k in admin.list_keys()} == before
