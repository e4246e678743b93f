"""The coordinator's FROST signing (issue 16, coordinator/frost_sign.py) with fake nodes: a
correct run, a bad share (named, audited, excluded; the next attempt succeeds with another
subset), a stalled signer, a crash between assignment and DONE (resumed, no commitment
reused), commitments never offered twice under concurrent requests, the attempt bound."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from coordinator.frost_sign import REFILL_TARGET, FrostSigning, session_of
from mpcnet.common.rpc import RpcError

from .frost_util import KEY_ID, FrostCluster, frost_cluster

MSG = b"pay 1 SOL to alice"


def _sign(c: FrostCluster, rid: str, signing: FrostSigning | None = None) -> tuple[bytes, tuple[int, ...], int]:
    s = signing or c.signing
    digest = hashlib.sha256(MSG).digest()
    sig, signers, attempt = s.sign(rid, c.key, digest, MSG if c.key.scheme == "ed25519" else b"", b"", b"bundle")
    assert sig.r == b"" and sig.s == b"" and sig.der == b""
    assert len(sig.schnorr) == 64
    return sig.schnorr, signers, attempt


class _Killed(BaseException):
    """The coordinator process dies here."""


def _all_assigned_unique(c: FrostCluster) -> None:
    """Every nonce a node signed with was signed for exactly one (request, attempt)."""
    for stub in c.stubs.values():
        nids = [nid for _, _, nid in stub.signed]
        assert len(nids) == len(set(nids))


def test_signs_with_t_signers_and_fresh_commitments(tmp_path: Path) -> None:
    c = frost_cluster(tmp_path)
    _sig, signers, attempt = _sign(c, "req-1")
    assert attempt == 1 and len(signers) == 2
    rows = c.db.nonces_of("req-1")
    assert {r.node for r in rows} == set(signers) and all(r.state == "assigned" and r.outcome == "signed" for r in rows)
    assert c.db.sign_attempts_taken("req-1") == 1
    # each signer signed once with the commitment assigned to it
    for r in rows:
        assert c.stubs[r.node].signed == [("req-1", 1, r.nonce_id)]


def test_bip340_request_signs_digest_with_root(tmp_path: Path) -> None:
    c = frost_cluster(tmp_path, scheme="schnorr-secp256k1-bip340")
    digest = b"\x42" * 32
    sig, _signers, _attempt = c.signing.sign("req-b", c.key, digest, b"", b"\x05" * 32, b"bundle")
    assert len(sig.schnorr) == 64 and sig.public_key == hashlib.sha256(c.key.public_key + b"\x05" * 32).digest()


def test_bad_share_names_sender_and_next_attempt_uses_another_subset(tmp_path: Path) -> None:
    c = frost_cluster(tmp_path)
    c.stubs[1].bad = True
    _sig, signers, attempt = _sign(c, "req-bad")
    assert attempt == 2 and 1 not in signers and signers == (2, 3)
    assert [a[1] for a in c.audited] == ["frost-bad-share"]
    assert c.audited[0][4]["node"] == 1 and c.audited[0][2] == "req-bad"
    first = [r for r in c.db.nonces_of("req-bad") if r.attempt == 1]
    assert {r.node: r.outcome for r in first}[1] == "bad-share"
    second = {r.node for r in c.db.nonces_of("req-bad") if r.attempt == 2}
    assert second == {2, 3}
    _all_assigned_unique(c)


def test_bad_signer_stays_excluded_after_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = frost_cluster(tmp_path, t=2, n=4)
    c.stubs[1].bad = True
    real = FrostSigning._assign
    calls = []

    def assign_then_die(self, *a, **kw):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:  # attempt 1 (nodes 1, 2) failed on node 1's share: killed before attempt 2
            raise _Killed
        return real(self, *a, **kw)

    monkeypatch.setattr(FrostSigning, "_assign", assign_then_die)
    with pytest.raises(_Killed):
        _sign(c, "req-x")
    monkeypatch.setattr(FrostSigning, "_assign", real)
    restarted = FrostSigning(c.signing.deps)  # a new process: what it knows of node 1 comes from the database
    _, signers, attempt = _sign(c, "req-x", restarted)
    assert attempt == 2 and 1 not in signers
    assert {r.node for r in c.db.nonces_of("req-x") if r.outcome == "bad-share"} == {1}


def test_stalled_signer_next_attempt(tmp_path: Path) -> None:
    c = frost_cluster(tmp_path)
    c.stubs[2].stall = True
    _, signers, attempt = _sign(c, "req-stall")
    assert attempt == 2 and 2 not in signers
    assert c.handles[2].healthy is False
    assert not c.audited  # a stall is not a provable fault


def test_attempts_bounded(tmp_path: Path) -> None:
    c = frost_cluster(tmp_path, t=2, n=5)
    for i in (1, 2, 3, 4):
        c.stubs[i].stall = True
    with pytest.raises(RpcError) as e:
        _sign(c, "req-many")
    assert c.db.sign_attempts_taken("req-many") <= 3
    assert e.value.code.name in ("FAILED_PRECONDITION", "UNAVAILABLE")


def test_request_level_refusal_ends_the_request(tmp_path: Path) -> None:
    c = frost_cluster(tmp_path)
    for stub in c.stubs.values():  # the request expired for every signer (one node alone: test_review_frost_sign)
        stub.refuse = "expired"
    with pytest.raises(RpcError) as e:
        _sign(c, "req-exp")
    assert getattr(e.value, "governance", "") == "expired"
    assert c.db.sign_attempts_taken("req-exp") == 1
    # the refusing node never consumed its nonce: the coordinator discards it there
    mine = [r.nonce_id for r in c.db.nonces_of("req-exp") if r.node == 1]
    assert c.stubs[1].discarded == mine and mine[0] not in c.stubs[1].fresh


def test_crash_between_assignment_and_done_resumes_without_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import coordinator.frost_sign as fs

    c = frost_cluster(tmp_path)
    real = fs.fanout

    def first_then_die(calls, timeout, **kw):  # type: ignore[no-untyped-def]
        first = min(calls)
        real({first: calls[first]}, timeout, **kw)  # node 1 consumes its nonce and answers ...
        raise _Killed  # ... and the coordinator is killed before the others answer

    monkeypatch.setattr(fs, "fanout", first_then_die)
    with pytest.raises(_Killed):
        _sign(c, "req-crash")
    monkeypatch.setattr(fs, "fanout", real)
    before = {r.node: r.nonce_id for r in c.db.nonces_of("req-crash")}
    assert set(before) == {1, 2} and c.db.sign_attempts_taken("req-crash") == 1
    restarted = FrostSigning(c.signing.deps)  # a new process: nothing in memory
    _, signers, att = _sign(c, "req-crash", restarted)
    assert (att, signers) == (1, (1, 2))  # the same attempt, resumed
    assert {r.node: r.nonce_id for r in c.db.nonces_of("req-crash")} == before  # no other commitment offered
    assert c.stubs[1].signed == [("req-crash", 1, before[1])]  # node 1 replayed its stored share, never signed twice
    assert session_of("req-crash", 1, [before[1], before[2]]) != session_of("req-crash", 2, [before[1], before[2]])
    _all_assigned_unique(c)


def test_assigned_commitment_is_never_fresh_again(tmp_path: Path) -> None:
    import sqlite3

    c = frost_cluster(tmp_path)
    c.signing.refill()
    got = c.db.assign_nonces("req-a", KEY_ID, 0, (1, 2), 3, 1)
    assert got is not None
    nid = got[1][1].nonce_id
    with pytest.raises(sqlite3.IntegrityError), c.db._tx() as conn:
        conn.execute("UPDATE frost_nonces SET state = 'fresh' WHERE nonce_id = ?", (nid,))
    with pytest.raises(sqlite3.IntegrityError), c.db._tx() as conn:
        conn.execute("UPDATE frost_nonces SET request_id = 'other' WHERE nonce_id = ?", (nid,))
    with pytest.raises(sqlite3.IntegrityError), c.db._tx() as conn:
        conn.execute("DELETE FROM frost_nonces WHERE nonce_id = ?", (nid,))


def test_refill_keeps_target_per_node(tmp_path: Path) -> None:
    c = frost_cluster(tmp_path)
    assert c.signing.refill() > 0
    counts = c.db.fresh_nonce_counts(KEY_ID, 0)
    assert set(counts) == {1, 2, 3} and all(v >= REFILL_TARGET for v in counts.values())
    assert c.signing.refill() == 0  # already at target


def test_concurrent_requests_never_share_a_commitment(tmp_path: Path) -> None:
    c = frost_cluster(tmp_path, t=2, n=3)
    errors: list[BaseException] = []
    results: dict[str, tuple[int, ...]] = {}

    def run(rid: str) -> None:
        try:
            results[rid] = _sign(c, rid)[1]
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(f"req-c{i}",)) for i in range(12)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert not errors and len(results) == 12
    rows = [r for i in range(12) for r in c.db.nonces_of(f"req-c{i}")]
    nids = [r.nonce_id for r in rows]
    assert len(nids) == len(set(nids))  # one (request, attempt) per commitment
    _all_assigned_unique(c)


def test_public_shares_unknown_refuses(tmp_path: Path) -> None:
    c = frost_cluster(tmp_path)
    other = c.key.__class__(b"\x08" * 32, "x", c.key.public_key, b"", 2, 3, "active", 0, "kg-2", "ed25519")
    c.db.add_key(other)
    with pytest.raises(RpcError) as e:
        c.signing.sign("req-u", other, hashlib.sha256(MSG).digest(), MSG, b"", b"bundle")
    assert e.value.code.name == "FAILED_PRECONDITION" and "public shares" in e.value.message


def test_reservation_needed_below_quorum_and_a_failed_one_blames_no_signer(tmp_path: Path) -> None:
    from coordinator.relay import NodesUnavailable

    c = frost_cluster(tmp_path, t=2, n=5)  # 2 signers < a majority of 5: receipts needed
    calls: list[tuple[int, tuple[int, ...]]] = []

    def reserve(rid, k, digest, path, bundle, attempt, signers, sid):  # type: ignore[no-untyped-def]
        calls.append((attempt, signers))
        if len(calls) == 1:
            raise NodesUnavailable({4: "node 4: down", 5: "node 5: down"})
        return [b"receipt"]

    c.signing.deps = c.signing.deps.__class__(**{**c.signing.deps.__dict__, "reserve": reserve})
    _, signers, attempt = _sign(c, "req-res")
    assert attempt == 2 and calls[0][1] == calls[1][1] == signers  # the same signers: the reservation blamed none of them
    first = [r for r in c.db.nonces_of("req-res") if r.attempt == 1]
    assert {r.outcome for r in first} == {"failed"}  # never sent: their nonces were discarded on the nodes
    assert all(c.stubs[r.node].discarded == [r.nonce_id] for r in first)
