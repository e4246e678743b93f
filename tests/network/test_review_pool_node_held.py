"""Review of the node side of presignature pools (issue 14, P2), as an attacker: what held.

A compromised coordinator (the test) calls the node RPCs directly: inconsistent presign
parameters per node never get an honest node banned; malformed attestations and receipts are
clean refusals that change nothing; a fresh presignature's secret never reaches a log line, an
audit entry, an error, Health or ListPresignatures; SignPresigned racing a discard or a ban of the
co-signer either releases one share from a presignature that is then a tombstone, or refuses and
the presignature is gone (never both, never two shares)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator

import pytest

from crypto_core.hazmat.presignature import load_presignature
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2
from tests.integration.relay_util import route

from .presign_util import Code, close, kind, presign, run_session, service, sign_request

N, T = 3, 2


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("review-held"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = {i: service(lay, i) for i in range(1, N + 1)}
    yield out
    for s in out.values():
        close(s)


def _dkg(svcs: dict[int, NodeService], label: bytes) -> node_pb2.DkgResult:
    res = run_session(svcs, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=label))
    k: node_pb2.DkgResult = res[1].dkg_result
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), None)
    return k


@pytest.fixture(scope="module")
def key(svcs: dict[int, NodeService]) -> node_pb2.DkgResult:
    return _dkg(svcs, b"review-held")


@pytest.mark.parametrize("variant", ["count", "path", "signers"])
def test_inconsistent_presign_parameters_per_node_ban_nobody(svcs, key, variant: str) -> None:
    sid = os.urandom(32)
    mine = node_pb2.PresignParams(key_id=key.key_id, signers=[1, 2], count=2)
    other = node_pb2.PresignParams(key_id=key.key_id, signers=[1, 2], count=2)
    if variant == "count":
        other.count = 3
    elif variant == "path":
        other.derivation_path[:] = [5]
    resps = {1: svcs[1].StartSession(node_pb2.StartSessionRequest(session_id=sid, presign=mine), None)}
    among = [1, 2]
    if variant == "signers":  # node 3 is told it signs with node 1; node 1 thinks node 2 does
        other.signers[:] = [1, 3]
        among = [1, 3]
    resps[among[1]] = svcs[among[1]].StartSession(node_pb2.StartSessionRequest(session_id=sid, presign=other), None)
    errors: list[RpcError] = []
    for rnd in (1, 2, 3):
        out = {}
        for k, inbox in route(resps, among).items():
            try:
                out[k] = svcs[k].Step(node_pb2.StepRequest(session_id=sid, round=rnd, envelopes=inbox), None)
            except RpcError as e:
                errors.append(e)
        if errors:
            break
        resps = out
    assert errors and all(e.code == Code.ABORTED and ("mpc-ban", "1") not in (e.metadata or ()) for e in errors)
    assert all(svcs[i].bans.banned(key.key_id) == frozenset() for i in svcs)
    assert all(svcs[i].store.count_fresh(key.key_id) == 0 for i in svcs)


def test_malformed_attestations_and_receipts_are_clean_refusals(lay, svcs, key, monkeypatch) -> None:
    import mpc_node.presign as presign_mod

    (p,) = presign(svcs, key, (1, 2), count=1)
    req = sign_request(lay, key, p)
    for junk in (b"\x00", b"\xff" * 100, os.urandom(300)):
        req.policy_attestation = junk
        with pytest.raises(RpcError) as e:
            svcs[1].SignPresigned(req, None)
        assert e.value.code == Code.INVALID_ARGUMENT and "policy_attestation" in e.value.message
    req.policy_attestation = b""
    monkeypatch.setattr(presign_mod, "reservation_quorum", lambda n: 3)  # receipts needed (as t < q)
    for junk in ([b"\x00"], [os.urandom(200)] * 3, [b""] * 3):
        req.reservation_receipts[:] = junk
        with pytest.raises(RpcError) as e:
            svcs[1].SignPresigned(req, None)
        assert (e.value.code, kind(e.value)) == (Code.PERMISSION_DENIED, "unreserved") and "reservation_receipts" in e.value.message
    assert svcs[1].store.served_attempts(req.request_id) == [] and svcs[1].store.reservation(req.request_id, 1) is None
    assert p.presig_id in {x.presig_id for x in svcs[1].store.fresh_presignatures(key.key_id)}


def _secret_texts(svc: NodeService, presig_id: bytes) -> list[str]:
    found = svc.store.pool_presignature(presig_id)
    assert found is not None and not found[0].used
    record = found[1]
    secret = load_presignature(record)._secret  # the test looks for it everywhere else
    assert secret is not None
    out = [record.hex()[-64:]]
    for x in secret:
        out += [f"{x:064x}", str(x)]
    return out


def test_no_fresh_secret_in_logs_audit_errors_health_or_lists(lay, svcs, key, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    pool = presign(svcs, key, (1, 3), count=2)
    secrets = [t for p in pool for t in _secret_texts(svcs[1], p.presig_id)]
    texts: list[str] = []
    texts.append(str(svcs[1].ListPresignatures(node_pb2.ListPresignaturesRequest(), None)))
    texts.append(str(svcs[1].Health(node_pb2.NodeHealthRequest(), None)))
    for bad in (sign_request(lay, key, pool[0], path=(3,)), sign_request(lay, key, pool[0], epoch=9)):
        with pytest.raises(RpcError) as e:
            svcs[1].SignPresigned(bad, None)
        texts.append(e.value.message + repr(e.value.metadata))
    texts += [repr(f) for f in svcs[1].store.fresh_presignatures(key.key_id)]
    texts.append(repr(svcs[1].store.pool_presignature(pool[0].presig_id)[0]))  # type: ignore[index]
    svcs[1].SignPresigned(sign_request(lay, key, pool[0]), None)  # the released share is no secret: not searched
    texts += [r.getMessage() for r in caplog.records]
    texts += [repr((e.action, e.details)) for e in svcs[1].audit.entries()]
    blob = "\n".join(texts)
    assert not [s for s in secrets if s in blob]  # neither presignature's record tail nor its phi, u, v


def _race(first: object, second: object) -> tuple[object, object]:
    out: list[object] = [None, None]
    go = threading.Barrier(2)

    def run(k: int, fn: object) -> None:
        go.wait()
        try:
            out[k] = fn()  # type: ignore[operator]
        except RpcError as e:
            out[k] = e

    threads = [threading.Thread(target=run, args=(k, fn)) for k, fn in enumerate((first, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out[0], out[1]


@pytest.mark.parametrize("rival", ["discard", "ban"])
def test_sign_presigned_racing_a_discard_or_a_ban_releases_once_or_not_at_all(lay, svcs, rival: str) -> None:
    key = _dkg(svcs, f"review-race-{rival}".encode())
    rounds = 6 if rival == "discard" else 1  # a ban is for good: one round
    pool = presign(svcs, key, (1, 2), count=rounds)
    for p in pool:
        req = sign_request(lay, key, p)

        def other(p: node_pb2.PresignatureInfo = p) -> object:
            if rival == "ban":
                return svcs[1].bans.record(key.key_id, 2, "test: race")
            discard = node_pb2.DiscardPresignaturesRequest(key_id=key.key_id, presig_ids=[p.presig_id], reason="race")
            return svcs[1].DiscardPresignatures(discard, None).discarded

        signed, _ = _race(lambda req=req: svcs[1].SignPresigned(req, None), other)
        found = svcs[1].store.pool_presignature(p.presig_id)
        if isinstance(signed, node_pb2.SignPresignedResponse):  # released: the presignature is a tombstone of this request
            assert found is not None and found[0].used and (found[0].request_id, found[0].attempt) == (req.request_id, 1)
        else:  # refused: it is gone and nothing was served
            assert isinstance(signed, RpcError) and kind(signed) in ("presig-unknown", "mpc-banned"), signed
            assert found is None and svcs[1].store.served_attempts(req.request_id) == []


def test_one_attempt_raced_over_two_presignatures_and_a_reservation_releases_at_most_one_share(lay, svcs) -> None:
    """Held: the same (request, attempt) sent at once with two presignatures of the same signer
    set and a ReserveSigning for a full-protocol session: the node grants the attempt once, so at
    most one share leaves it, and the loser's presignature stays fresh."""
    from concurrent.futures import ThreadPoolExecutor

    key = _dkg(svcs, b"review-race-attempt")
    for _ in range(3):
        a, b = presign(svcs, key, (1, 2), count=2)
        req_a = sign_request(lay, key, a)
        req_b = node_pb2.SignPresignedRequest()
        req_b.CopyFrom(req_a)
        req_b.presig_id = b.presig_id
        reserve = node_pb2.ReserveSigningRequest(
            key_id=key.key_id, request_id=req_a.request_id, attempt=1, signers=[1, 2], session_id=os.urandom(32),
            approval_bundle=req_a.approval_bundle, digest=req_a.digest,
        )

        def call(fn: object, req: object) -> object:
            try:
                return fn(req, None)  # type: ignore[operator]
            except RpcError as e:
                return e

        n1 = svcs[1]
        with ThreadPoolExecutor(3) as pool:
            out = list(pool.map(call, (n1.SignPresigned, n1.SignPresigned, n1.ReserveSigning), (req_a, req_b, reserve)))
        won = [r for r in out if not isinstance(r, RpcError)]
        assert len(won) == 1 and all(kind(r) == "attempt-taken" for r in out if isinstance(r, RpcError)), out
        fresh = {p.presig_id for p in n1.store.fresh_presignatures(key.key_id)}
        used = [p for p in (a, b) if p.presig_id not in fresh]
        assert len(used) == (0 if isinstance(won[0], node_pb2.ReserveSigningResponse) else 1)
        assert n1.store.served_attempts(req_a.request_id) == ([] if not used else [1])
