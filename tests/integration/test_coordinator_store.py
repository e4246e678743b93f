"""The coordinator's disk fills up (a small tmpfs under its data directory; needs root to
mount, skipped otherwise): requests that need a write get UNAVAILABLE naming the store, never
INTERNAL, its log has no traceback, ``mpc status`` (ClusterStatus.store_failures) names the failing
store meanwhile, and it works again (and says so) once there is room."""

from __future__ import annotations

import hashlib
import os
import time

import grpc
import pytest

from mpcnet.client import MpcClient, MpcError, SigningTeam

from .conftest import coordinator_on_tmpfs, make_cluster


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    with coordinator_on_tmpfs(make_cluster(tmp_path_factory, "coord-store-2of3", 3, 2), "4m") as c:
        yield c


def test_full_disk_at_the_coordinator_is_unavailable_naming_the_store(full) -> None:
    d = full.lay.coordinator_dir
    with MpcClient.from_cluster(full.lay.dir, identity="admin1", timeout=60) as admin, \
            SigningTeam.from_cluster(full.lay.dir, timeout=60) as team:
        key = admin.create_key("store")
        filler = d / "filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        try:
            for call in (
                lambda: team.requester.submit_sign_request(key.key_id, hashlib.sha256(b"full").digest(), description="full disk"),
                lambda: admin.create_key("no room"),
            ):
                with pytest.raises(MpcError) as e:
                    call()
                assert e.value.code == grpc.StatusCode.UNAVAILABLE, e.value
                assert "store: coordinator cannot use its" in e.value.message, e.value.message
            failing = admin.cluster_status().store_failures  # mpc status says so too (coordinator/store_health.py)
            assert failing and {f.store for f in failing} <= {"database", "audit log"}, failing
        finally:
            os.unlink(filler)
        sig = team.sign(key.key_id, hashlib.sha256(b"room again").digest())
        assert sig.der
        deadline = time.monotonic() + 10  # the signing's writes clear it (its audit entries: the background flush)
        while admin.cluster_status().store_failures and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not admin.cluster_status().store_failures
    log = full.lay.log("coordinator").read_text()
    assert "Traceback" not in log and "internal error" not in log
