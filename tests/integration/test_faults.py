"""Faults on real processes: nodes killed during DKG and signing, restarts, tampering nodes.

Each case ends with every process up again, so the cases can share one 3-of-5 cluster.
"""

from __future__ import annotations

import hashlib
import json
import time

import grpc
import pytest

from mpcnet.client import MpcClient, MpcError, SigningTeam

from .conftest import running_cluster
from .test_cluster_api import verify_independently

N, T = 5, 3


@pytest.fixture(scope="module")
def fc(tmp_path_factory):
    # pools off: these faults hit the full protocol's rounds (a pool signs in one round, no round 2)
    with running_cluster(tmp_path_factory, "faults-3of5", N, T, fault_files=True, presign=False) as c:
        yield c


@pytest.fixture(scope="module")
def fclient(fc):
    with MpcClient.from_cluster(fc.lay.dir, identity="admin1", timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def fteam(fc):
    with SigningTeam.from_cluster(fc.lay.dir, timeout=120) as t:
        yield t


@pytest.fixture(scope="module")
def fkey(fclient):
    return fclient.create_key("faults")


def set_fault(c, i: int, **doc) -> None:
    (c.lay.dir / "faults" / f"node-{i}.json").write_text(json.dumps(doc))


def clear_fault(c, i: int) -> None:
    (c.lay.dir / "faults" / f"node-{i}.json").unlink(missing_ok=True)


def fault_pending(c, i: int) -> bool:
    return (c.lay.dir / "faults" / f"node-{i}.json").exists()


def revive(c, *indices: int) -> None:
    for i in indices:
        name = f"node-{i}"
        if c.procs[name].poll() is None:
            continue
        c.start(name, c.node_env[i])
    c.wait_healthy([f"node-{i}" for i in indices])
    wait_coordinator_sees(c, indices)


def wait_coordinator_sees(c, indices, timeout: float = 15.0) -> None:
    """Until the coordinator's own health probes report the nodes available again."""
    with MpcClient.from_cluster(c.lay.dir, identity="auditor1", timeout=10) as cl:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = {n.index: n.healthy for n in cl.cluster_status().nodes}
            if all(st[i] for i in indices):
                return
            time.sleep(0.1)
    raise AssertionError(f"coordinator does not see nodes {indices} as available")


def digest(tag: str) -> bytes:
    return hashlib.sha256(tag.encode()).digest()


def test_node_killed_during_dkg_gives_unavailable_naming_it(fc, fclient, fteam, fkey) -> None:
    set_fault(fc, 4, action="crash", protocol="dkg", round=3)
    with pytest.raises(MpcError) as e:
        fclient.create_key("doomed")
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert "needs all 5 nodes" in e.value.message and "node 4 (node-4)" in e.value.message
    assert fc.procs["node-4"].wait(timeout=10) == 137
    revive(fc, 4)
    key = fclient.create_key("after-dkg-crash")
    assert key.status == "active"
    sig = fteam.sign(key.key_id, digest("after dkg crash"))
    verify_independently(key.public_key, sig.der, digest("after dkg crash"))


def test_node_killed_during_signing_is_replaced_by_another(fc, fclient, fteam, fkey) -> None:
    set_fault(fc, 2, action="crash", protocol="sign", round=2)
    retried = None
    for j in range(6):  # node selection rotates: node 2 takes part within a few requests
        sig = fteam.sign(fkey.key_id, digest(f"crash-sign {j}"))
        verify_independently(fkey.public_key, sig.der, digest(f"crash-sign {j}"))
        if not fault_pending(fc, 2):
            retried = sig
            break
    assert retried is not None, "node 2 was never chosen"
    info = fclient.get_sign_request(retried.request_id)
    assert info.state == "done" and info.attempts == 2
    assert 2 not in retried.signers
    assert fc.procs["node-2"].wait(timeout=10) == 137
    revive(fc, 2)


def test_signing_survives_two_dead_nodes_and_names_missing_ones(fc, fclient, fteam, fkey) -> None:
    fc.kill("node-4")
    fc.kill("node-5")
    try:
        t0 = time.monotonic()
        with pytest.raises(MpcError) as e:
            fclient.create_key("needs everyone")
        assert e.value.code == grpc.StatusCode.UNAVAILABLE
        assert "node 4 (node-4)" in e.value.message and "node 5 (node-5)" in e.value.message
        assert time.monotonic() - t0 < 15
        for j in range(2):
            sig = fteam.sign(fkey.key_id, digest(f"two down {j}"))
            assert set(sig.signers) == {1, 2, 3}
        fc.kill("node-3")
        with pytest.raises(MpcError) as e:
            fteam.sign(fkey.key_id, digest("three down"))
        assert e.value.code == grpc.StatusCode.UNAVAILABLE
        msg = e.value.message
        assert "needs 3 of 5 nodes but only 2 are available" in msg
        for name in ("node-3", "node-4", "node-5"):
            assert f"({name})" in msg
        info = [k for k in fclient.list_keys() if k.key_id == fkey.key_id][0]
        assert info.status == "active"
    finally:
        revive(fc, 3, 4, 5)
    sig = fteam.sign(fkey.key_id, digest("all back"))
    verify_independently(fkey.public_key, sig.der, digest("all back"))


def test_request_waits_for_nodes_that_are_restarting_instead_of_failing(fc, fclient, fteam, fkey) -> None:
    """Three of five nodes down while a request is approved (as under a supervisor restarting
    killed nodes): the request waits for them and ends DONE; it does not fail for want of nodes
    that are back within seconds (the approvers would have to approve a new request)."""
    import threading

    for i in (3, 4, 5):
        fc.kill(f"node-{i}")
    timer = threading.Timer(4.0, lambda: [fc.start(f"node-{i}", fc.node_env[i]) for i in (4, 5)])
    timer.start()
    try:
        r = fteam.request(fkey.key_id, digest("restarting nodes"))
        assert r.state == "done", (r.state, r.error_code, r.error_message)
        assert r.signature is not None and set(r.signature.signers) <= {1, 2, 4, 5}
        verify_independently(fkey.public_key, r.signature.der, digest("restarting nodes"))
    finally:
        timer.join()
        revive(fc, 3, 4, 5)


def test_nodes_restarted_between_keygen_and_signing_keep_their_shares(fc, fclient, fteam) -> None:
    key = fclient.create_key("restart-me")
    for i in range(1, N + 1):  # kill -9: nothing acknowledged may be lost
        fc.kill(f"node-{i}")
    revive(fc, *range(1, N + 1))
    for j in range(3):
        sig = fteam.sign(key.key_id, digest(f"after restart {j}"), path=[j])
        verify_independently(key.derive([j]), sig.der, digest(f"after restart {j}"))


def test_restarted_coordinator_still_answers_for_its_requests(fc, fclient, fteam, fkey) -> None:
    sig = fteam.sign(fkey.key_id, digest("before coordinator restart"))
    fc.kill("coordinator")
    fc.start("coordinator")
    fc.wait_healthy(["coordinator"])
    info = fclient.get_sign_request(sig.request_id)  # the client's channel reconnects by itself
    assert info.state == "done" and info.signature == sig
    assert fkey.key_id in [k.key_id for k in fclient.list_keys()]
    again = fteam.sign(fkey.key_id, digest("before coordinator restart"), request_id=sig.request_id)
    assert again == sig
    sig2 = fteam.sign(fkey.key_id, digest("after coordinator restart"))
    verify_independently(fkey.public_key, sig2.der, digest("after coordinator restart"))


def test_node_tampering_with_its_dkg_payload_is_named(fc, fclient) -> None:
    set_fault(fc, 3, action="tamper-payload", protocol="dkg", round=2)
    try:
        with pytest.raises(MpcError) as e:
            fclient.create_key("tampered")
    finally:
        clear_fault(fc, 3)
    assert e.value.code == grpc.StatusCode.ABORTED
    assert e.value.message.startswith("keygen aborted: ")
    assert "node 3 (node-3): round 2" in e.value.message


def test_message_altered_after_signing_is_named(fc, fclient) -> None:
    set_fault(fc, 2, action="tamper-signature", protocol="dkg", round=1)
    try:
        with pytest.raises(MpcError) as e:
            fclient.create_key("altered")
    finally:
        clear_fault(fc, 2)
    assert e.value.code == grpc.StatusCode.ABORTED
    assert "round-1 broadcast message from node 2 (node-2): signature: does not verify" in e.value.message


def test_node_tampering_during_signing_is_named_and_signed_around(fc, fclient, fteam, fkey) -> None:
    """Node 5 corrupts its signing messages: the honest co-signer aborts naming it, and the
    coordinator signs the request without that pair in one signer set (one of the two cheated;
    it cannot tell which) instead of failing it: every request ends DONE, without new approvals."""
    set_fault(fc, 5, action="tamper-payload", protocol="sign", round=1)
    log = fc.lay.log("coordinator")
    seen = log.read_text().count("retrying without")
    try:
        for j in range(4):
            sig = fteam.sign(fkey.key_id, digest(f"tamper sign {j}"))
            verify_independently(fkey.public_key, sig.der, digest(f"tamper sign {j}"))
    finally:
        clear_fault(fc, 5)
    text = log.read_text()
    assert text.count("retrying without") > seen, "node 5 was never chosen"
    assert "node 5 (node-5): round " in text and "retrying without " in text
    sig = fteam.sign(fkey.key_id, digest("after tamper"))
    verify_independently(fkey.public_key, sig.der, digest("after tamper"))


def test_approved_request_interrupted_by_a_coordinator_crash_is_signed_after_the_restart(fc, fclient, fteam, fkey) -> None:
    """The approvals are durable and still valid: a restarted coordinator resumes the signing
    (no node released a share in the interrupted session, so none refuses it as a replay)."""
    for i in range(1, N + 1):  # whichever nodes are chosen, the session stalls in round 2
        set_fault(fc, i, action="delay", protocol="sign", round=2, seconds=3.0)
    try:
        r = fteam.requester.submit_sign_request(fkey.key_id, digest("interrupted"), request_id="interrupted-1", description="crash me")
        fteam.approvers[0].approve(r.request_id)
        r = fteam.approvers[1].approve(r.request_id)
        assert r.state == "signing"
        time.sleep(1.0)
        fc.kill("coordinator")
    finally:
        for i in range(1, N + 1):
            clear_fault(fc, i)
    fc.start("coordinator")
    fc.wait_healthy(["coordinator"])
    done = fteam.requester.wait_sign_request("interrupted-1", timeout=60)
    assert done.state == "done", done
    verify_independently(fkey.public_key, done.signature.der, digest("interrupted"))
    assert "was signing when the coordinator stopped: resuming" in fc.lay.log("coordinator").read_text()


def test_no_process_crashed(fc) -> None:
    time.sleep(0.5)
    for name, p in fc.procs.items():
        assert p.poll() is None, f"{name} is not running"
    for name in fc.lay.names():
        text = fc.lay.log(name).read_text()
        assert "Traceback" not in text, f"{name} logged a traceback"
