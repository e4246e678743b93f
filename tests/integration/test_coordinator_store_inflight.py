"""The coordinator's disk fills up while work is in flight (a small tmpfs as its data directory;
needs root to mount, skipped otherwise), then has room again: the work it had started ends on its
own, as after a restart, with no traceback in its log.

* Three FROST signatures whose signer (node 1) is held after its nonce consume: they ended
  FAILED ``internal error (OperationalError)`` although the signatures existed; now DONE, every
  R distinct.
* A refresh held in its session (node 1 delayed in round 2) whose decision met the full disk:
  it stayed RUNNING (and blocked the key's next operation) until a restart; now DONE.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator

import pytest

from mpcnet.client import MpcClient, SigningTeam
from mpcnet.cluster.launcher import LocalCluster

from .conftest import coordinator_on_tmpfs, make_cluster


@pytest.fixture(scope="module")
def inflight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with coordinator_on_tmpfs(make_cluster(tmp_path_factory, "coord-store-inflight", 3, 2, fault_files=True), "24m") as c:
        yield c


def _fill(c: LocalCluster) -> os.PathLike[str]:
    filler = c.lay.coordinator_dir / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def _wait_for(c: LocalCluster, name: str, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in c.lay.log(name).read_text():
        assert time.monotonic() < deadline, f"{name} never logged {text!r}"
        time.sleep(0.05)


def _arm(c: LocalCluster, fault: dict[str, object]) -> None:
    (c.lay.dir / "faults" / "node-1.json").write_text(json.dumps(fault))


def test_frost_signatures_in_flight_end_done(inflight: LocalCluster) -> None:
    c = inflight
    with MpcClient.from_cluster(c.lay.dir, identity="admin1", timeout=120) as admin, \
            SigningTeam.from_cluster(c.lay.dir, timeout=120) as team:
        key = admin.create_key("inflight", scheme="ed25519")
        team.sign_schnorr(key.key_id, message=b"before")
        _arm(c, {"action": "delay", "point": "nonce-consumed", "seconds": 4, "once": False})
        sigs: dict[int, bytes] = {}
        errors: dict[int, str] = {}

        def sign(i: int) -> None:
            try:
                sigs[i] = team.sign_schnorr(key.key_id, message=b"in flight %d" % i).signature
            except Exception as e:
                errors[i] = repr(e)

        threads = [threading.Thread(target=sign, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        _wait_for(c, "node-1", "injecting fault delay")
        filler = _fill(c)
        time.sleep(6)  # node 1 answers meanwhile; the coordinator cannot record anything
        (c.lay.dir / "faults" / "node-1.json").unlink(missing_ok=True)
        os.unlink(filler)
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert len(sigs) == 3 and len({s[:32] for s in sigs.values()}) == 3  # distinct R


def test_a_refresh_in_flight_ends_done(inflight: LocalCluster) -> None:
    c = inflight
    with MpcClient.from_cluster(c.lay.dir, identity="admin1", timeout=120) as a1, \
            MpcClient.from_cluster(c.lay.dir, identity="admin2", timeout=120) as a2, \
            SigningTeam.from_cluster(c.lay.dir, timeout=120) as team:
        key = a1.create_key("refresh-inflight")
        _arm(c, {"action": "delay", "protocol": "reshare", "round": 2, "seconds": 5, "once": True})
        p = a1.refresh_key(key.key_id, reason="disk fills up")
        a2.approve_lifecycle(p.proposal_id, expect_digest=p.digest)
        _wait_for(c, "coordinator", "with dealers")
        filler = _fill(c)
        time.sleep(8)
        os.unlink(filler)
        deadline = time.monotonic() + 120
        while True:
            (op,) = a1.key_operations(key.key_id)
            if op.state in ("done", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert op.state == "done", op
        assert team.sign(key.key_id, hashlib.sha256(b"after the refresh").digest()).der
    assert "Traceback" not in c.lay.log("coordinator").read_text()
