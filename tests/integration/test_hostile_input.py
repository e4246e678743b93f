"""Hostile text and malformed values on the RPCs and fields added for issue 8 (ReserveSigning,
StartSession's request id, policy attestations), against a real 2-of-3 cluster.

Every bad value must be refused with INVALID_ARGUMENT / PERMISSION_DENIED / FAILED_PRECONDITION
naming the field, never INTERNAL (or a misleading UNAVAILABLE), change nothing, and the audit
entry of the refusal must be written (with the caller's text escaped).
"""

from __future__ import annotations

import io
import json
import os

import grpc
import pytest

from mpcnet.client import MpcClient
from mpcnet.common.stores.audit import export_jsonl
from mpcnet.wire.mpc.v1 import node_pb2

from ..conftest import scaled
from .conftest import coordinator_handles, running_cluster
from .govtools import approved_bundle
from .outbox_util import outbox_drained

N, T = 3, 2
Code = grpc.StatusCode
DIGEST = bytes(range(7, 39))
HOSTILE_IDS = ["a\x00b", "\x00", "x\u202egnp.exe", "\x1b[2J\x1b[31mpwned", "x" * 70_000]


@pytest.fixture(scope="module")
def hc(tmp_path_factory):
    with running_cluster(tmp_path_factory, "hostile-2of3", N, T) as c:
        yield c


@pytest.fixture(scope="module")
def key(hc):
    with MpcClient.from_cluster(hc.lay.dir, identity="admin1", timeout=60) as c:
        return c.create_key("hostile")


@pytest.fixture(scope="module")
def nodes(hc):
    """The harness holds the coordinator's certificate: a compromised coordinator."""
    with coordinator_handles(hc) as hs:
        yield hs


def node_audit(hc, i: int) -> list[dict]:
    outbox_drained(hc.lay.node_dir(i))  # entries committed with their state change are appended in the background
    buf = io.StringIO()
    export_jsonl(hc.lay.node_dir(i) / "audit.db", buf)
    return [json.loads(x) for x in buf.getvalue().splitlines()]


def test_hostile_request_ids_are_invalid_argument_and_audited(hc, nodes, key) -> None:
    rid, b = approved_bundle(hc.lay, key.key_id, DIGEST)
    before = len(node_audit(hc, 1))
    for bad in HOSTILE_IDS:
        reserve = node_pb2.ReserveSigningRequest(
            key_id=key.key_id, request_id=bad, attempt=1, signers=[1, 2], session_id=os.urandom(32),
            approval_bundle=b, digest=DIGEST,
        )
        with pytest.raises(grpc.RpcError) as e:
            nodes[1].stub.ReserveSigning(reserve, timeout=20)
        assert e.value.code() == Code.INVALID_ARGUMENT and e.value.details().startswith("request_id: "), (bad, e.value)
        sign = node_pb2.SignParams(key_id=key.key_id, signers=[1, 2], digest=DIGEST, request_id=bad, approval_bundle=b)
        with pytest.raises(grpc.RpcError) as e:
            nodes[1].stub.StartSession(node_pb2.StartSessionRequest(session_id=os.urandom(32), sign=sign), timeout=20)
        assert e.value.code() == Code.INVALID_ARGUMENT and e.value.details().startswith("sign.request_id: "), (bad, e.value)
    refusals = [e for e in node_audit(hc, 1)[before:] if e["outcome"] == "refused"]
    assert [e["action"] for e in refusals] == ["sign-reserve", "sign-start"] * len(HOSTILE_IDS)
    for e in refusals:
        text = e["details"].get("request", "")
        assert text and text.isascii() and text.isprintable(), e  # the caller's text, escaped
    # nothing was reserved or started: the genuine request still gets attempt 1
    ok = nodes[1].stub.ReserveSigning(
        node_pb2.ReserveSigningRequest(
            key_id=key.key_id, request_id=rid, attempt=1, signers=[1, 2], session_id=os.urandom(32),
            approval_bundle=b, digest=DIGEST,
        ),
        timeout=20,
    )
    assert ok.created
    assert "internal error" not in hc.lay.log("node-1").read_text()


HOSTILE_LABELS = ["a\x00b", "evil\x1b[2J", "x\u202egnp.exe", "two\nlines", "tab\tbed", "\u2028"]


def test_hostile_key_labels_are_invalid_argument_and_run_no_keygen(hc, nodes) -> None:
    with MpcClient.from_cluster(hc.lay.dir, identity="admin1", timeout=60) as admin:
        before = {k.key_id for k in admin.list_keys()}
        for bad in HOSTILE_LABELS:
            with pytest.raises(Exception) as e:
                admin.create_key(bad)
            assert "INVALID_ARGUMENT" in str(e.value) and "label: contains U+" in str(e.value), (bad, e.value)
        assert {k.key_id for k in admin.list_keys()} == before
        # a compromised coordinator sending the label to the nodes directly: refused up front
        for bad in HOSTILE_LABELS:
            dkg = node_pb2.DkgParams(threshold=T, parties=N, key_label=bad.encode())
            with pytest.raises(grpc.RpcError) as ge:
                nodes[1].stub.StartSession(node_pb2.StartSessionRequest(session_id=os.urandom(32), dkg=dkg), timeout=20)
            assert ge.value.code() == Code.INVALID_ARGUMENT and ge.value.details().startswith("dkg.key_label: "), (bad, ge.value)
        assert admin.create_key("plain label, with spaces").label == "plain label, with spaces"
    for name in ("coordinator", "node-1"):
        assert "internal error" not in hc.lay.log(name).read_text()


# --- the CLI: text from the (untrusted) coordinator never reaches the terminal raw ------------

EVIL = "\r\x1b[2K\x1b[8m\u202e\x9b31m\nnode-2       ok"


class _EvilCoordinator:
    """What a compromised coordinator can answer through MpcClient: any text it likes."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def fetch_audit(self, component: str):
        from mpcnet.client import MpcError

        raise MpcError(Code.UNAVAILABLE, f"component: {component}: {EVIL}")

    def list_sign_requests(self, **kw):
        return []

    def list_keys(self):
        from mpcnet.client import Key

        pk = bytes.fromhex("02" + "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
        return [Key(b"\x01" * 32, EVIL, pk, b"\x00" * 32, 2, 3, "active", 0)]


def _no_raw_control(text: str) -> None:
    for line in text.splitlines():
        assert line.isprintable(), repr(line)


def test_cli_escapes_coordinator_text_in_audit_verify_keys_and_errors(tmp_path, monkeypatch, capsys) -> None:
    from mpcnet.client import MpcError, cli

    (tmp_path / "identities" / "auditor1").mkdir(parents=True)
    (tmp_path / "cluster.json").write_text(json.dumps({"audit": {"node-2": {"public_key": "11" * 32}}}))
    monkeypatch.setattr(cli, "_client", lambda ap, args: _EvilCoordinator())
    assert cli.main(["--cluster", str(tmp_path), "--as", "auditor1", "audit", "verify"]) == 1
    out = capsys.readouterr()
    _no_raw_control(out.out + out.err)
    assert "node-2       BROKEN" in out.out and "audit trail NOT verified" in out.out
    assert cli.main(["--cluster", str(tmp_path), "--as", "auditor1", "keys"]) == 0
    out = capsys.readouterr()
    _no_raw_control(out.out + out.err)
    assert len(out.out.splitlines()) == 1

    class Failing(_EvilCoordinator):
        def list_keys(self):
            raise MpcError(Code.INVALID_ARGUMENT, EVIL)

    monkeypatch.setattr(cli, "_client", lambda ap, args: Failing())
    assert cli.main(["--cluster", str(tmp_path), "--as", "auditor1", "keys"]) == 1
    out = capsys.readouterr()
    _no_raw_control(out.out + out.err)
    assert len(out.err.splitlines()) == 1


def test_caller_text_in_node_logs_is_escaped(hc, nodes) -> None:
    """AbortSession's free-text reason comes from the (untrusted) coordinator: it must not forge
    log lines or put terminal escapes into the node's log. A reason with control or format
    characters is refused (INVALID_ARGUMENT naming ``reason``, the session kept); an accepted
    one is logged escaped."""
    sid = os.urandom(32)
    nodes[1].stub.StartSession(
        node_pb2.StartSessionRequest(session_id=sid, dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"abort-me")),
        timeout=20,
    )
    evil = "done\n2026-01-01 00:00:00,000 node-1 ERROR mpc_node: FORGED LINE\x1b[8m\u202e\r"
    with pytest.raises(grpc.RpcError) as e:
        nodes[1].stub.AbortSession(node_pb2.AbortSessionRequest(session_id=sid, reason=evil), timeout=20)
    assert e.value.code() == Code.INVALID_ARGUMENT and e.value.details().startswith("reason: "), e.value
    assert e.value.details().isprintable()
    assert nodes[1].stub.AbortSession(node_pb2.AbortSessionRequest(session_id=sid, reason="done: FORGED? no"), timeout=20).existed
    lines = hc.lay.log("node-1").read_text().splitlines()
    assert not any(line.startswith("2026-01-01") for line in lines)
    mine = [line for line in lines if "aborted by the coordinator" in line and "FORGED" in line]
    assert len(mine) == 1 and mine[0].isprintable(), mine


# --- a bounded fuzz of the new node RPCs -------------------------------------------------------

from hypothesis import (  # noqa: E402
    HealthCheck,
    given,
    settings,
    strategies as st,
)

ALLOWED = {Code.INVALID_ARGUMENT, Code.PERMISSION_DENIED, Code.FAILED_PRECONDITION, Code.NOT_FOUND}
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)
_u32 = st.integers(0, 2**32 - 1)
_blob = st.binary(max_size=300)


def _mutate(data: bytes, i: int, b: int) -> bytes:
    if not data:
        return bytes([b])
    i %= len(data)
    return data[:i] + bytes([b]) + data[i + 1 :]


@settings(max_examples=scaled(60), deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_reserve_signing_and_attestations(hc, nodes, key, data) -> None:
    rid, b = approved_bundle(hc.lay, key.key_id, DIGEST) if data.draw(st.booleans()) else ("r", b"")
    req = node_pb2.ReserveSigningRequest(
        key_id=data.draw(st.sampled_from([key.key_id, os.urandom(32)]) | _blob),
        request_id=data.draw(st.just(rid) | _text),
        attempt=data.draw(st.integers(0, 5) | _u32),
        signers=data.draw(st.lists(st.integers(0, 5) | _u32, max_size=6)),
        session_id=data.draw(st.just(os.urandom(32)) | _blob),
        approval_bundle=data.draw(st.just(b) | st.builds(_mutate, st.just(b), st.integers(0, 10**6), st.integers(0, 255)) | _blob),
        digest=data.draw(st.just(DIGEST) | _blob),
        derivation_path=data.draw(st.lists(_u32, max_size=4)),
    )
    try:
        nodes[1].stub.ReserveSigning(req, timeout=20)
    except grpc.RpcError as e:
        assert e.code() in ALLOWED, (req, e.code(), e.details())
        assert e.details().isprintable(), e.details()
    att = data.draw(_blob | st.builds(lambda: b""))
    try:
        nodes[2].stub.InstallPolicyAttestation(node_pb2.InstallPolicyAttestationRequest(attestation=att), timeout=20)
    except grpc.RpcError as e:
        assert e.code() in ALLOWED, (att, e.code(), e.details())
    step = node_pb2.StepRequest(
        session_id=data.draw(st.just(os.urandom(32)) | _blob), round=data.draw(_u32),
        reservation_receipts=data.draw(st.lists(_blob, max_size=4)), attempt=data.draw(_u32),
    )
    try:
        nodes[3].stub.Step(step, timeout=20)
    except grpc.RpcError as e:
        assert e.code() in ALLOWED, (step, e.code(), e.details())


@settings(max_examples=scaled(40), deadline=None, suppress_health_check=list(HealthCheck))
@given(att=_blob, key_id=_blob, raw=_blob)
def test_fuzz_coordinator_policy_rpcs(hc, att, key_id, raw) -> None:
    from mpcnet.wire.mpc.v1 import coordinator_pb2

    with MpcClient.from_cluster(hc.lay.dir, identity="admin2", timeout=20) as admin:
        stub = admin._stub
        calls = [
            (stub.SubmitPolicyAttestation, coordinator_pb2.SubmitPolicyAttestationRequest(attestation=att)),
            (stub.GetPolicyHistory, coordinator_pb2.GetPolicyHistoryRequest(key_id=key_id)),
        ]
        for fn, req in calls:
            try:
                fn(req, timeout=20)
            except grpc.RpcError as e:
                assert e.code() in ALLOWED, (req, e.code(), e.details())
        for m in ("ListPolicies", "GetPolicyHistory", "SubmitPolicyAttestation"):
            try:
                admin._channel.unary_unary(f"/mpc.v1.Coordinator/{m}")(raw, timeout=20)
            except grpc.RpcError as e:
                assert e.code() in ALLOWED, (m, raw, e.code(), e.details())


def test_coordinator_audits_every_refused_attestation(hc) -> None:
    """An admin presenting another admin's attestation (or one from the future) is refused,
    and, like a bad signature, the refusal is in the coordinator's signed audit log."""
    from governance.attestation import PolicyAttestation, SignedPolicyAttestation, sign_attestation
    from mpcnet.client.identities import load_identity
    from mpcnet.wire.mpc.v1 import coordinator_pb2

    from .govtools import now_ms

    with MpcClient.from_cluster(hc.lay.dir, identity="admin2", timeout=30) as admin2:
        held = SignedPolicyAttestation.from_bytes(
            admin2._stub.ListPolicies(coordinator_pb2.ListPoliciesRequest(), timeout=20).policy_attestation
        )
        a = held.attestation

        def signed(by: str, issued: int) -> bytes:
            att = PolicyAttestation(a.governance_root, issued, by, a.heads)
            return sign_attestation(att, load_identity(hc.lay.dir, by).signing_key).to_bytes()

        def coordinator_refusals() -> list[dict]:
            buf = io.StringIO()
            export_jsonl(hc.lay.coordinator_dir / "audit.db", buf)
            entries = [json.loads(x) for x in buf.getvalue().splitlines()]
            return [e for e in entries if e["action"] == "policy-attest" and e["outcome"] == "refused"]

        before = len(coordinator_refusals())
        for data, code, field in [
            (signed("admin1", now_ms()), Code.PERMISSION_DENIED, "attestation.attestation.admin"),
            (signed("admin2", now_ms() + 3_600_000), Code.INVALID_ARGUMENT, "attestation.attestation.issued_at_ms"),
            (b"\xff" * 40, Code.INVALID_ARGUMENT, "attestation.tag"),
        ]:
            with pytest.raises(grpc.RpcError) as e:
                admin2._stub.SubmitPolicyAttestation(coordinator_pb2.SubmitPolicyAttestationRequest(attestation=data), timeout=20)
            assert e.value.code() == code and e.value.details().startswith(field + ":"), e.value
        refusals = coordinator_refusals()[before:]
        assert len(refusals) == 3 and all(r["actor"] == "admin2" for r in refusals), refusals


def test_node_audits_calls_from_roles_that_may_not_make_them(hc, key) -> None:
    """Admins now reach the nodes directly (policy pushes): an admin or any other certificate
    calling a coordinator-only RPC such as ReserveSigning is refused and, as at the coordinator,
    audited (rpc-denied)."""
    from .test_cluster_api import _raw_channel

    ep = hc.lay.endpoints()["node-1"]
    before = len(node_audit(hc, 1))
    reserve = node_pb2.ReserveSigningRequest(key_id=key.key_id, request_id="r1", attempt=1).SerializeToString()
    for who in ("admin1", "requester1"):
        with _raw_channel(hc, ep, who) as ch:
            with pytest.raises(grpc.RpcError) as e:
                ch.unary_unary("/mpc.v1.Node/ReserveSigning")(reserve, timeout=10)
            assert e.value.code() == Code.PERMISSION_DENIED and "needs role coordinator" in e.value.details()
    denied = [e for e in node_audit(hc, 1)[before:] if e["action"] == "rpc-denied"]
    assert [(e["actor"], e["details"]) for e in denied] == [
        ("admin1", {"method": "ReserveSigning", "role": "admin", "needed": "coordinator"}),
        ("requester1", {"method": "ReserveSigning", "role": "requester", "needed": "coordinator"}),
    ]


@pytest.mark.parametrize("rate", ["10/0", "0/3600", "10/99999999999", "-1/60"])
def test_policy_propose_out_of_range_rate_is_a_usage_error_not_a_traceback(tmp_path, monkeypatch, capsys, rate) -> None:
    from mpcnet.client import cli

    (tmp_path / "cluster.json").write_text("{}")
    monkeypatch.setattr(cli, "_client", lambda ap, args: _EvilCoordinator())
    assert cli.main(["--cluster", str(tmp_path), "--as", "admin1", "policy", "propose", f"--rate={rate}"]) == 2
    err = capsys.readouterr().err
    assert "mpc: error: --rate: " in err and "Traceback" not in err, err


@pytest.mark.parametrize("limit", ["-1", "99999999999999", "ten"])
def test_requests_limit_out_of_range_is_a_usage_error_not_a_traceback(tmp_path, monkeypatch, capsys, limit) -> None:
    from mpcnet.client import cli

    (tmp_path / "cluster.json").write_text("{}")
    monkeypatch.setattr(cli, "_client", lambda ap, args: _EvilCoordinator())
    assert cli.main(["--cluster", str(tmp_path), "--as", "requester1", "requests", f"--limit={limit}"]) == 2
    assert "Invalid value for '--limit': " in capsys.readouterr().err


def test_audit_export_to_an_unwritable_out_is_a_usage_error_not_a_traceback(tmp_path, monkeypatch, capsys) -> None:
    from mpcnet.client import cli

    (tmp_path / "cluster.json").write_text("{}")
    monkeypatch.setattr(cli, "_client", lambda ap, args: _EvilCoordinator())
    argv = ["--cluster", str(tmp_path), "--as", "auditor1", "audit", "export", "--jsonl", "--out", str(tmp_path / "no" / "x")]
    assert cli.main(argv) == 2
    assert "mpc: error: --out: cannot write " in capsys.readouterr().err


def test_cluster_up_with_a_bad_scrypt_n_or_dir_fails_cleanly_and_writes_nothing(tmp_path, capsys) -> None:
    from mpcnet.cluster import cli as cluster_cli

    d = tmp_path / "c"
    assert cluster_cli.main(["up", "-n", "3", "-t", "2", "--dir", str(d), "--scrypt-n", "3"]) == 2
    assert "'--scrypt-n': must be 1024..1048576, got 3" in capsys.readouterr().err
    assert cluster_cli.main(["up", "-n", "3", "-t", "2", "--dir", str(d), "--scrypt-n", "3000"]) == 2
    assert "scrypt-n: must be a power of two" in capsys.readouterr().err
    assert not d.exists()  # nothing half-made that a corrected retry would trip over
    (tmp_path / "file").write_text("")
    assert cluster_cli.main(["up", "-n", "3", "-t", "2", "--dir", str(tmp_path / "file" / "c")]) == 2
    assert "mpc-cluster: error: cannot create the cluster in " in capsys.readouterr().err


@settings(max_examples=scaled(40), deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_start_session_sign_params(hc, nodes, key, data) -> None:
    """SignParams as a compromised coordinator may send them (policy_attestation is new)."""
    from mpcnet.wire.mpc.v1 import coordinator_pb2

    rid, b = approved_bundle(hc.lay, key.key_id, DIGEST)
    with MpcClient.from_cluster(hc.lay.dir, identity="auditor1", timeout=20) as c:
        att = bytes(c._stub.ListPolicies(coordinator_pb2.ListPoliciesRequest(), timeout=20).policy_attestation)
    sign = node_pb2.SignParams(
        key_id=key.key_id, signers=data.draw(st.sampled_from([[1, 2], [2, 3], [1, 3]])), digest=DIGEST,
        request_id=data.draw(st.just(rid) | _text), approval_bundle=b,
        policy_attestation=data.draw(
            st.just(att) | st.builds(_mutate, st.just(att), st.integers(0, 10**6), st.integers(0, 255)) | _blob
        ),
    )
    try:
        nodes[2].stub.StartSession(node_pb2.StartSessionRequest(session_id=os.urandom(32), sign=sign), timeout=20)
    except grpc.RpcError as e:
        assert e.code() in ALLOWED, (sign, e.code(), e.details())
        assert e.details().isprintable(), e.details()
