"""The one-round path (issue 14, coordinator/presigned.py) against fake nodes holding real
presignatures: the choice prefers healthy signer sets, the signature verifies under the
coordinator's own PK', the fallbacks leave nothing assigned, a transient failure is retried with
the same (request, attempt, presig_id), and a restart resends the same assignment."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import coincurve
import pytest

from coordinator.db import AuditEvent
from governance.reservation import MAX_SIGN_ATTEMPTS

from .pool_util import Cluster, cluster

DIGEST = hashlib.sha256(b"pay 1 coin").digest()


def _verify(c: Cluster, sig: object, path: tuple[int, ...] = ()) -> None:
    from crypto_core.bip32 import derive

    pk = derive(c.keys[1].public_key, c.keys[1].chain_code, path).public_key.encode()
    assert sig.public_key == pk  # type: ignore[attr-defined]
    assert coincurve.PublicKey(pk).verify(sig.der, DIGEST, hasher=None)  # type: ignore[attr-defined]


def _done(c: Cluster, rid: str) -> None:
    """What SignRequests does at DONE: the request row's transition with the pool's hook."""
    hook = c.signing.done(rid)
    assert hook is not None
    with c.db._tx() as conn:
        assert hook[1](conn)


def _used_ids(c: Cluster) -> list[bytes]:
    return [bytes(r[0]) for r in c.db._query("SELECT presig_id FROM presigs WHERE state = 'used'")]


def test_a_request_signs_in_one_round_from_the_pool(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    rows = c.presign((1, 2), 2)
    out = c.signing.sign("req-1", c.key, DIGEST, (), b"bundle")
    assert out is not None
    sig, signers, attempt = out
    assert (signers, attempt) == ((1, 2), 1)
    _verify(c, sig)
    assert c.db.sign_attempts_taken("req-1") == 1
    assert [x[0] for x in c.stubs[1].calls] == [rows[0].presig_id]  # one call per signer, the oldest
    _done(c, "req-1")
    assert c.db.signed_presigned("req-1") and _used_ids(c) == [rows[0].presig_id]
    assert c.signing.done("req-1") is None  # handed over once
    out2 = c.signing.sign("req-2", c.key, DIGEST, (), b"bundle")
    assert out2 is not None and out2[0].r != sig.r  # another presignature, another nonce


def test_the_path_is_bound_and_the_derived_key_is_the_coordinators(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    c.presign((2, 3), 1, path=(4, 2))
    assert c.signing.sign("req-1", c.key, DIGEST, (), b"b") is None  # no pool for the master path
    out = c.signing.sign("req-2", c.key, DIGEST, (4, 2), b"b")
    assert out is not None
    _verify(c, out[0], (4, 2))


def test_the_choice_prefers_healthy_then_clock_trusted_then_idle_sets(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    for s, tag in (((1, 2), b"a"), ((1, 3), b"b"), ((2, 3), b"c")):
        c.presign(s, 2, seed=tag)
    c.nodes[1].healthy = False  # only {2, 3} is usable
    out = c.signing.sign("req-1", c.key, DIGEST, (), b"b")
    assert out is not None and out[1] == (2, 3)
    c.nodes[1].healthy = True
    c.nodes[2].clock_suspect = "skew"
    out = c.signing.sign("req-2", c.key, DIGEST, (), b"b")
    assert out is not None and out[1] == (1, 3)
    c.nodes[2].clock_suspect = ""
    c.nodes[3].inflight = 5
    out = c.signing.sign("req-3", c.key, DIGEST, (), b"b")
    assert out is not None and out[1] == (1, 2)
    c.nodes[3].inflight = 0
    c.nodes[2].healthy = None  # not yet probed counts as not usable
    c.nodes[1].healthy = False
    assert c.signing.sign("req-4", c.key, DIGEST, (), b"b") is None
    assert c.db.sign_attempts_taken("req-4") == 0  # nothing taken for an empty choice


def test_an_empty_pool_or_pools_off_fall_back_without_taking_an_attempt(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    assert c.signing.sign("req-1", c.key, DIGEST, (), b"b") is None
    assert c.db.sign_attempts_taken("req-1") == 0
    off = cluster(tmp_path / "off", enabled=False)
    off.presign((1, 2), 1)
    assert off.signing.sign("req-1", off.key, DIGEST, (), b"b") is None
    assert off.db.sign_attempts_taken("req-1") == 0 and len(off.db.ready_presigs()) == 1


@pytest.mark.parametrize("kind", ["presig-unknown", "presig-mismatch", "epoch", "attempt-taken", "stale-policy", "denied"])
def test_a_refusal_discards_the_presignature_and_falls_back_at_the_next_attempt(tmp_path: Path, kind: str) -> None:
    c = cluster(tmp_path)
    rows = c.presign((1, 2), 2)
    c.stubs[2].refuse = kind
    c.pools.reconcile_due()  # every node reconciled now: not due again for a while
    assert c.signing.sign("req-1", c.key, DIGEST, (), b"b") is None
    assert c.db.sign_attempts_taken("req-1") == 1  # its attempt is spent: the full protocol takes the next
    assert c.db.next_sign_attempt("req-1") == 2
    assert c.db.presig_assigned_to("req-1") is None
    assert [r.presig_id for r in c.db.ready_presigs()] == [rows[1].presig_id]
    assert rows[0].presig_id not in c.stubs[2].fresh  # discarded on the signers too (node 1 consumed it)
    assert c.signing.done("req-1") is None
    if kind == "presig-unknown":  # node 2 lost its pool: it is reconciled at the next pass
        c.stubs[2].fresh.clear()
        c.pools.reconcile_due()
        assert c.db.ready_presigs() == []


def test_a_transient_failure_is_retried_with_the_same_assignment(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    rows = c.presign((1, 2), 1)
    c.stubs[1].fail = 1  # down for a moment
    c.stubs[2].lose_replies = 1  # consumed, the reply was lost: it replays
    out = c.signing.sign("req-1", c.key, DIGEST, (), b"b")
    assert out is not None
    _verify(c, out[0])
    for i in (1, 2):
        assert c.stubs[i].calls == [(rows[0].presig_id, "req-1", 1)] * 2
    assert c.db.sign_attempts_taken("req-1") == 1


def test_a_node_still_down_after_the_retry_falls_back(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    c.presign((1, 2), 1)
    c.stubs[2].fail = 2
    assert c.signing.sign("req-1", c.key, DIGEST, (), b"b") is None
    assert c.nodes[2].healthy is False
    assert c.db.ready_presigs() == [] and c.db.presig_assigned_to("req-1") is None


def test_a_share_of_another_presignature_or_a_plain_share_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = cluster(tmp_path)
    c.presign((1, 2), 1)
    real = c.stubs[2]._answer

    def plain(pid: bytes, share: bytes, replayed: bool):  # type: ignore[no-untyped-def]
        return real(pid, share[:40] + share[41:], replayed)  # the version byte dropped: a v1 layout

    monkeypatch.setattr(c.stubs[2], "_answer", plain)
    assert c.signing.sign("req-1", c.key, DIGEST, (), b"b") is None
    assert c.db.presig_assigned_to("req-1") is None


@pytest.mark.parametrize("sent_to", [(), (1,), (1, 2)])
def test_a_restart_resends_the_same_assignment(tmp_path: Path, sent_to: tuple[int, ...]) -> None:
    """Coordinator SIGKILL after the assignment and before the send, after a partial send, or
    after every signer consumed (the reply lost): the restarted coordinator sends the same
    (request, attempt, presig_id); the nodes that consumed replay; no presig_id is used twice."""
    c = cluster(tmp_path)
    rows = c.presign((1, 2), 2)
    a = c.db.assign_presig("req-1", c.key.key_id, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 5)
    assert a is not None
    from mpcnet.wire.mpc.v1 import node_pb2

    for i in sent_to:  # the old process's sends that reached a node
        c.stubs[i].SignPresigned(node_pb2.SignPresignedRequest(
            presig_id=a.presig_id, key_id=c.key.key_id, epoch=0, signers=(1, 2), digest=DIGEST, request_id="req-1", attempt=1,
        ))
    c.db.close()
    d = cluster(tmp_path)  # a new process on the same database file, talking to the same nodes
    for i, h in d.nodes.items():
        h.stub = c.stubs[i]
    out = d.signing.sign("req-1", d.key, DIGEST, (), b"b")
    assert out is not None and out[2] == 1  # the same attempt
    _verify(c, out[0])
    assert d.db.sign_attempts_taken("req-1") == 1
    for i in (1, 2):
        assert {x[0] for x in c.stubs[i].calls} == {a.presig_id}
    hook = d.signing.done("req-1")
    assert hook is not None and hook[0] == a.presig_id
    assert [r.presig_id for r in d.db.ready_presigs()] == [rows[1].presig_id]


def test_a_stale_assignment_after_an_epoch_change_is_discarded(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    c.presign((1, 2), 1)
    a = c.db.assign_presig("req-1", c.key.key_id, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 5)
    assert a is not None
    c.epoch[0] = 1  # a refresh committed while the coordinator was down
    assert c.signing.sign("req-1", c.key, DIGEST, (), b"b") is None
    assert c.db.presig_assigned_to("req-1") is None and c.stubs[1].calls == []


def test_done_marks_used_inside_the_request_transition(tmp_path: Path) -> None:
    """The DONE transition and the presignature's ``used`` commit together (db.transition's ``also``)."""
    c = cluster(tmp_path)
    c.presign((1, 2), 1)
    out = c.signing.sign("req-1", c.key, DIGEST, (), b"b")
    assert out is not None
    with c.db._tx() as conn:
        conn.execute(
            "INSERT INTO sign_requests (request_id, key_id, digest, requester, request, scope, state, created_ms, expires_ms,"
            " updated_ms) VALUES ('req-1', ?, ?, 'r', x'', x'', 'signing', 0, 0, 0)", (c.key.key_id, DIGEST),
        )
    hook = c.signing.done("req-1")
    assert hook is not None

    def mark_then_fail(conn: sqlite3.Connection) -> object:
        hook[1](conn)
        raise RuntimeError("disk")

    with pytest.raises(RuntimeError):  # a failing DONE transaction leaves the presignature assigned
        c.db.transition("req-1", ("signing",), "done", audit=AuditEvent("coordinator", "sign-done", "req-1", "done", {}),
                        also=mark_then_fail)
    assert c.db.presig_assigned_to("req-1") is not None
    c.db.transition("req-1", ("signing",), "done", audit=AuditEvent("coordinator", "sign-done", "req-1", "done", {}), also=hook[1])
    assert c.db.signed_presigned("req-1") and c.db.presig_assigned_to("req-1") is None


def test_below_the_reservation_quorum_the_attempt_is_reserved_first(tmp_path: Path) -> None:
    """2-of-5: two signers are not a majority, so the coordinator collects receipts for exactly
    (request, attempt, signers, session = presig_id) and sends them with SignPresigned."""
    from coordinator.presigned import PresignedDeps, PresignedSigning

    c = cluster(tmp_path, t=2, n=5)
    rows = c.presign((2, 4), 1)
    asked: list[tuple[object, ...]] = []
    seen: list[list[bytes]] = []

    def reserve(*args: object) -> list[bytes]:
        asked.append(args)
        return [b"receipt-1", b"receipt-2", b"receipt-3"]

    real = c.stubs[2].SignPresigned

    def spy(req, **kw):  # type: ignore[no-untyped-def]
        seen.append(list(req.reservation_receipts))
        return real(req, **kw)

    c.stubs[2].SignPresigned = spy  # type: ignore[method-assign]
    signing = PresignedSigning(PresignedDeps(c.pools, reserve, lambda: b"", 2.0, c.signing.deps.stop))
    out = signing.sign("req-1", c.key, DIGEST, (), b"bundle")
    assert out is not None and out[1] == (2, 4)
    _verify(c, out[0])
    assert [a[0] for a in asked] == ["req-1"] and asked[0][5:] == (1, (2, 4), rows[0].presig_id)
    assert seen == [[b"receipt-1", b"receipt-2", b"receipt-3"]]
    c3 = cluster(tmp_path / "three", t=2, n=3)
    c3.presign((1, 2), 1)
    assert c3.signing.sign("req-1", c3.key, DIGEST, (), b"b") is not None  # 2 of 3 is a majority: no receipts


def test_a_reservation_that_fails_falls_back(tmp_path: Path) -> None:
    from coordinator.presigned import PresignedDeps, PresignedSigning
    from coordinator.relay import NodesUnavailable

    c = cluster(tmp_path, t=2, n=5)
    c.presign((1, 2), 1)

    def reserve(*args: object) -> list[bytes]:
        raise NodesUnavailable({3: "node 3: down", 4: "node 4: down", 5: "node 5: down"})

    signing = PresignedSigning(PresignedDeps(c.pools, reserve, lambda: b"", 2.0, c.signing.deps.stop))
    assert signing.sign("req-1", c.key, DIGEST, (), b"b") is None
    assert c.stubs[1].calls == [] and c.db.ready_presigs() == [] and c.db.sign_attempts_taken("req-1") == 1
