"""An operator killing FROST signers and the coordinator on a real 3-of-5 cluster (issue 16).

* A signer SIGKILLed after its consume transaction committed and before it answered (node fault
  point ``nonce-consumed``): the request completes with another subset within MAX_SIGN_ATTEMPTS.
* A signer stopped (SIGSTOP) after the coordinator assigned it a commitment: the attempt's
  deadline passes and the coordinator signs with another subset (ROAST-like).
* The coordinator SIGKILLed between the assignment and DONE (coordinator fault point
  ``frost-assigned``; and after the signers consumed their nonces): after the restart the request
  completes in the same attempt with the same commitments (the signers replay their stored
  shares), no commitment is offered again.
* Every node restarted (SIGKILL): each deletes its fresh nonces at start; the coordinator drops
  the commitments they held and refills, and the next request does not fail.

Throughout: a nonce id is in one package only (the coordinator's ``frost_nonces`` rows and the
nodes' nonce tombstones agree on its (request, attempt)), and every signature's R is new."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from coincurve import PublicKeyXOnly

from coordinator.faults import ENV as COORDINATOR_FAULT_ENV
from crypto_core.frost.signing import signing_key
from governance.reservation import MAX_SIGN_ATTEMPTS
from mpcnet.client import Key, MpcClient, SigningTeam
from mpcnet.cluster.launcher import LocalCluster

from .conftest import make_cluster
from .test_faults import clear_fault, fault_pending, revive, set_fault, wait_coordinator_sees
from .test_frost_cluster import ed25519_verifies

N, T = 5, 3
ED, TR = "ed25519", "schnorr-secp256k1-bip340"
R_SEEN: list[bytes] = []  # every signature's R (ed25519 encoded R, bip340 x(R)) in this module


@pytest.fixture(scope="module")
def kc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = make_cluster(tmp_path_factory, "frost-kill-3of5", N, T, fault_files=True, presign=False)
    c.env[COORDINATOR_FAULT_ENV] = str(c.lay.dir / "faults" / "coordinator.json")  # read at each point; absent: no fault
    try:
        c.start_all()
        yield c
    finally:
        for p in c.procs.values():  # a stopped process cannot stop
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
        c.stop()


@pytest.fixture(scope="module")
def admin(kc: LocalCluster) -> Iterator[MpcClient]:
    with MpcClient.from_cluster(kc.lay.dir, identity="admin1", timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def team(kc: LocalCluster) -> Iterator[SigningTeam]:
    with SigningTeam.from_cluster(kc.lay.dir, timeout=120) as t:
        yield t


@pytest.fixture(scope="module")
def ed_key(admin: MpcClient) -> Key:
    return admin.create_key("kill ed25519", scheme=ED)


@pytest.fixture(scope="module")
def tr_key(admin: MpcClient) -> Key:
    return admin.create_key("kill taproot", scheme=TR)


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


def coordinator_nonces(c: LocalCluster) -> list[tuple[bytes, int, str, str, int, str]]:
    """The coordinator's ``frost_nonces``: (nonce_id, node, state, request_id, attempt, outcome)."""
    with _ro(c.lay.coordinator_dir / "coordinator.db") as conn:
        rows = conn.execute("SELECT nonce_id, node, state, request_id, attempt, outcome FROM frost_nonces").fetchall()
    return [(bytes(r[0]), int(r[1]), str(r[2]), str(r[3]), int(r[4]), str(r[5])) for r in rows]


def node_nonces(c: LocalCluster, i: int) -> list[tuple[bytes, bool, str | None, int | None]]:
    """Node ``i``'s ``frost_nonces`` (public columns): (nonce_id, used, request_id, attempt)."""
    with _ro(c.lay.node_dir(i) / "node.db") as conn:
        rows = conn.execute("SELECT nonce_id, used, request_id, attempt FROM frost_nonces").fetchall()
    return [(bytes(r[0]), bool(r[1]), r[2], r[3]) for r in rows]


def of_request(c: LocalCluster, rid: str) -> list[tuple[bytes, int, int, str]]:
    """The commitments assigned to request ``rid``: (nonce_id, node, attempt, outcome), by attempt and node."""
    return sorted(((n, node, a, o) for n, node, s, r, a, o in coordinator_nonces(c) if r == rid), key=lambda x: (x[2], x[1]))


def tombstones(c: LocalCluster, rid: str) -> dict[int, list[tuple[bytes, int | None]]]:
    """Per node, its used nonces for request ``rid``: (nonce_id, attempt)."""
    out: dict[int, list[tuple[bytes, int | None]]] = {}
    for i in range(1, N + 1):
        got = [(n, a) for n, used, r, a in node_nonces(c, i) if used and r == rid]
        if got:
            out[i] = got
    return out


def no_nonce_in_two_packages(c: LocalCluster) -> None:
    """Every nonce a node used is the coordinator's commitment of that node, assigned to the same
    (request, attempt); a nonce id appears on one node only; an attempt holds one commitment per
    signer."""
    coord = {n: (node, state, r, a) for n, node, state, r, a, _ in coordinator_nonces(c)}
    owner: dict[bytes, int] = {}
    for i in range(1, N + 1):
        for n, used, r, a in node_nonces(c, i):
            assert owner.setdefault(n, i) == i, f"nonce {n.hex()[:16]} on nodes {owner[n]} and {i}"
            if used:
                assert n in coord, f"node {i} used nonce {n.hex()[:16]} the coordinator never recorded"
                node, state, cr, ca = coord[n]
                assert (node, state, cr, ca) == (i, "assigned", r, a), (i, r, a, coord[n])
    per_attempt: dict[tuple[str, int], list[int]] = {}
    for _, node, state, r, a, _ in coordinator_nonces(c):
        if state == "assigned":
            per_attempt.setdefault((r, a), []).append(node)
    for (r, a), nodes in per_attempt.items():
        assert len(nodes) == len(set(nodes)) == T and 1 <= a <= MAX_SIGN_ATTEMPTS, (r, a, nodes)


def sign_ed(team: SigningTeam, key: Key, rid: str) -> Any:
    message = f"frost kill test: {rid}".encode()
    sig = team.sign_schnorr(key.key_id, message=message, request_id=rid)
    assert ed25519_verifies(key.public_key, message, sig.signature)
    R_SEEN.append(sig.signature[:32])
    return sig


def wait_until(what: str, cond: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def coordinator_fresh(c: LocalCluster) -> dict[int, set[bytes]]:
    """Per node, the nonce ids of the coordinator's ``fresh`` commitments of it."""
    out: dict[int, set[bytes]] = {}
    for n, node, state, *_ in coordinator_nonces(c):
        if state == "fresh":
            out.setdefault(node, set()).add(n)
    return out


def nodes_hold_the_fresh_commitments(c: LocalCluster) -> bool:
    """Every node has fresh commitments at the coordinator, and holds each of them (unused).

    Not so for a couple of health probes after a node restarted: it deleted its fresh nonces at
    start, and the coordinator drops its commitments of them only when two probes in a row report
    fewer than it has (coordinator/frost_nonce_sync.py); a request meanwhile gets nonce-unknown."""
    fresh = coordinator_fresh(c)  # read before the nodes: a node stores a batch before the coordinator records it
    held = {i: {n for n, used, *_ in node_nonces(c, i) if not used} for i in range(1, N + 1)}
    return len(fresh) == N and all(fresh[i] <= held[i] for i in fresh)


def coordinator_fault(c: LocalCluster) -> Path:
    return c.lay.dir / "faults" / "coordinator.json"


def test_signer_killed_after_consuming_its_nonce_the_request_completes_with_another_subset(
    kc: LocalCluster, admin: MpcClient, team: SigningTeam, ed_key: Key,
) -> None:
    sign_ed(team, ed_key, "warm-up")  # node 1 takes part in every request while all are healthy and idle
    set_fault(kc, 1, action="crash", point="nonce-consumed")
    sig = sign_ed(team, ed_key, "signer-killed")
    assert not fault_pending(kc, 1) and kc.procs["node-1"].wait(timeout=30) == 137
    info = admin.get_sign_request("signer-killed")
    assert info.state == "done" and 2 <= info.attempts <= MAX_SIGN_ATTEMPTS and 1 not in sig.signers
    rows = of_request(kc, "signer-killed")
    first = [r for r in rows if r[2] == 1]
    assert 1 in [r[1] for r in first] and dict((r[1], r[3]) for r in first)[1] == "failed"
    # node 1 consumed its nonce durably before it died: the tombstone names the first attempt
    assert [a for _, a in tombstones(kc, "signer-killed")[1]] == [1]
    revive(kc, 1)
    no_nonce_in_two_packages(kc)


def test_signer_stopped_after_its_assignment_the_coordinator_signs_with_another_subset(
    kc: LocalCluster, admin: MpcClient, team: SigningTeam, ed_key: Key,
) -> None:
    """SIGSTOP during the coordinator's pause at ``frost-assigned`` (a delay fault): the stopped
    signer was chosen while healthy, never answers; the attempt's deadline ends it."""
    fault = coordinator_fault(kc)
    fault.write_text('{"action": "delay", "point": "frost-assigned", "seconds": 1.0, "once": true}')
    out: dict[str, Any] = {}
    th = threading.Thread(target=lambda: out.update(sig=sign_ed(team, ed_key, "signer-stopped")), daemon=True)
    th.start()
    stopped = 0
    try:
        wait_until("the assignment", lambda: not fault.exists())
        first = wait_until("the attempt's commitments", lambda: [r for r in of_request(kc, "signer-stopped") if r[2] == 1])
        stopped = min(r[1] for r in first)
        os.kill(kc.procs[f"node-{stopped}"].pid, signal.SIGSTOP)
        th.join(timeout=60)
        assert not th.is_alive() and "sig" in out, "the request did not complete"
    finally:
        if stopped:
            os.kill(kc.procs[f"node-{stopped}"].pid, signal.SIGCONT)
        th.join(timeout=60)
    info = admin.get_sign_request("signer-stopped")
    assert info.state == "done" and info.attempts == 2 and stopped not in out["sig"].signers
    wait_coordinator_sees(kc, [stopped], timeout=30)
    no_nonce_in_two_packages(kc)


def test_coordinator_killed_after_the_assignment_completes_the_request_after_its_restart(
    kc: LocalCluster, admin: MpcClient, team: SigningTeam, tr_key: Key,
) -> None:
    coordinator_fault(kc).write_text('{"action": "crash", "point": "frost-assigned"}')
    rid, digest = "coordinator-killed", hashlib.sha256(b"coordinator killed at frost-assigned").digest()
    team.requester.submit_sign_request(tr_key.key_id, digest, request_id=rid)
    for ap in team.approvers:
        try:
            if ap.approve(rid).state != "pending_approval":
                break
        except Exception:  # the quorum's signing thread killed the coordinator under the answer
            break
    assert kc.procs["coordinator"].wait(timeout=30) == 137 and not coordinator_fault(kc).exists()
    assigned = of_request(kc, rid)
    assert [(node, a, o) for _, node, a, o in assigned] == [(node, 1, "") for _, node, _, _ in assigned] and len(assigned) == T
    assert tombstones(kc, rid) == {}  # no signer heard of it
    kc.start("coordinator")
    kc.wait_healthy(["coordinator"])
    done = team.requester.wait_sign_request(rid, timeout=60)
    assert done.state == "done" and done.attempts == 1, (done.state, done.attempts, done.error_message)
    sig = done.signature
    assert PublicKeyXOnly(signing_key(TR, tr_key.public_key)).verify(sig.signature, digest)
    R_SEEN.append(sig.signature[:32])
    after = of_request(kc, rid)
    assert [(n, node, a) for n, node, a, _ in after] == [(n, node, a) for n, node, a, _ in assigned]  # the same commitments
    assert {o for *_, o in after} == {"signed"}
    assert {i: [a for _, a in v] for i, v in tombstones(kc, rid).items()} == {node: [1] for _, node, _, _ in assigned}
    no_nonce_in_two_packages(kc)


def test_coordinator_killed_after_the_signers_consumed_their_nonces_gets_their_stored_shares(
    kc: LocalCluster, team: SigningTeam, ed_key: Key,
) -> None:
    """The signers stall after their consume commit (a node ``delay`` at ``nonce-consumed``); the
    coordinator is SIGKILLed then. Restarted, it resumes the same attempt: each signer answers
    its stored share (``replayed``), none signs with another nonce."""
    rid = "coordinator-killed-after-consume"
    message = f"frost kill test: {rid}".encode()
    for i in range(1, N + 1):
        set_fault(kc, i, action="delay", point="nonce-consumed", seconds=3.0)
    try:
        team.requester.submit_sign_request(ed_key.key_id, message=message, request_id=rid)
        for ap in team.approvers:
            if ap.approve(rid).state != "pending_approval":
                break
        used = wait_until("the consume commits", lambda: len(tombstones(kc, rid)) == T and tombstones(kc, rid))
        kc.kill("coordinator")
    finally:
        for i in range(1, N + 1):
            clear_fault(kc, i)
    kc.start("coordinator")
    kc.wait_healthy(["coordinator"])
    done = team.requester.wait_sign_request(rid, timeout=60)
    assert done.state == "done" and done.attempts == 1, (done.state, done.attempts, done.error_message)
    assert ed25519_verifies(ed_key.public_key, message, done.signature.signature)
    R_SEEN.append(done.signature.signature[:32])
    assert tombstones(kc, rid) == used  # the same nonces, one use each
    assert set(done.signature.signers) == set(used)
    no_nonce_in_two_packages(kc)


def test_every_node_restarted_lost_its_fresh_nonces_and_the_next_request_does_not_fail(
    kc: LocalCluster, admin: MpcClient, team: SigningTeam, ed_key: Key,
) -> None:
    """Starts from a refill every node holds, not one the coordinator merely lists: a test just
    before may have restarted a node (the first one does) whose lost commitments the coordinator
    has not dropped yet (``-n 2`` without ``--dist loadfile`` can run this right after it)."""
    wait_until("a refill every node holds", lambda: nodes_hold_the_fresh_commitments(kc))
    for i in range(1, N + 1):
        kc.kill(f"node-{i}")
    before = {i: {n for n, used, *_ in node_nonces(kc, i) if not used} for i in range(1, N + 1)}
    revive(kc, *range(1, N + 1))  # before any assertion: a failure here must not leave the module's nodes down
    assert all(before.values()), {i: len(v) for i, v in before.items()}
    for i in range(1, N + 1):  # deleted at start: never revived (the refill may have made new ones already)
        assert not before[i] & {n for n, *_ in node_nonces(kc, i)}
    sig = sign_ed(team, ed_key, "after-node-restarts")
    info = admin.get_sign_request("after-node-restarts")
    assert info.state == "done" and info.attempts <= MAX_SIGN_ATTEMPTS, info
    # the coordinator's fresh commitments are again ones the nodes hold
    wait_until("a refill the nodes hold", lambda: nodes_hold_the_fresh_commitments(kc))
    sign_ed(team, ed_key, "after-refill")
    assert admin.get_sign_request("after-refill").attempts == 1
    assert sig is not None
    no_nonce_in_two_packages(kc)


def test_every_signature_has_a_new_r_and_no_process_crashed(kc: LocalCluster) -> None:
    assert R_SEEN and len(set(R_SEEN)) == len(R_SEEN)  # 7 signatures when the module runs whole
    no_nonce_in_two_packages(kc)
    for name, p in kc.procs.items():
        assert p.poll() is None, f"{name} is not running"
    for name in kc.lay.names():
        assert "Traceback" not in kc.lay.log(name).read_text(), f"{name} logged a traceback"
