"""Scheduled refresh across real processes (issue 11, item 5): admins give a key's policy a
``refresh_period_s`` through the CLI (``mpc policy propose --refresh-period``), and after the
period the key is at epoch 1 without any admin action and still signs (verified with OpenSSL).

The period is the minimum (60 s) and the test waits for it in real time: the coordinator has no
test clock, and the nodes check the share's age by their own clock, so shifting only the nodes'
clocks would not make the coordinator start the refresh. One wait of about 65 s, in one test.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from mpcnet.client import MpcClient, SigningTeam
from mpcnet.wire.mpc.v1 import coordinator_pb2

from .cli_util import cli
from .conftest import running_cluster
from .test_cluster_api import verify_independently

PERIOD = 60


@pytest.fixture(scope="module")
def sc(tmp_path_factory):
    with running_cluster(tmp_path_factory, "schedule-2of3", 3, 2) as c:
        yield c


def mpc(d: Path, who: str, *args: str, check: bool = True):
    return cli("--cluster", str(d), "--as", who, *args, check=check)


def test_a_key_with_a_refresh_period_is_refreshed_without_any_admin_action(sc) -> None:
    d = sc.lay.dir
    key = json.loads(mpc(d, "admin1", "keygen", "--label", "scheduled", "--json").stdout)["key_id"]
    created = time.monotonic()
    # the period is checked where it is given (the policy's own rules: 60 s .. 366 days)
    p = mpc(d, "admin1", "policy", "propose", "--key", key, "--refresh-period", "59", check=False)
    assert p.returncode == 2 and "refresh_period_s" in p.stderr
    prop = json.loads(mpc(d, "admin1", "policy", "propose", "--key", key, "--refresh-period", str(PERIOD), "--json").stdout)
    assert prop["state"] == "pending" and prop["new_policy"]["refresh_period_s"] == PERIOD
    done = json.loads(mpc(d, "admin2", "policy", "approve", prop["proposal_id"], "--json").stdout)
    assert done["state"] == "applied"
    shown = json.loads(mpc(d, "approver1", "policy", "show", "--key", key, "--json").stdout)
    assert shown["refresh_period_s"] == PERIOD and not shown["inherited_from_default"]
    assert "refresh period" in mpc(d, "approver1", "policy", "show", "--key", key).stdout
    # another change of the key's policy keeps the period
    prop = json.loads(mpc(d, "admin1", "policy", "propose", "--key", key, "--ttl", "1800", "--json").stdout)
    assert prop["new_policy"]["refresh_period_s"] == PERIOD and prop["new_policy"]["ttl_seconds"] == 1800
    mpc(d, "admin2", "policy", "approve", prop["proposal_id"], "--json")
    with MpcClient.from_cluster(d, identity="admin1", timeout=120) as a1, SigningTeam.from_cluster(d, timeout=120) as team:
        kid = bytes.fromhex(key)
        # not yet: epoch 0
        assert a1._stub.GetKey(coordinator_pb2.GetKeyRequest(key_id=kid), timeout=30).epoch == 0
        deadline = created + PERIOD + 90
        while True:
            info = a1._stub.GetKey(coordinator_pb2.GetKeyRequest(key_id=kid), timeout=30)
            if info.epoch >= 1 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert info.epoch == 1 and list(info.committee) == [1, 2, 3]
        assert time.monotonic() - created >= PERIOD  # not before the period
        ops = a1._stub.ListKeyOperations(coordinator_pb2.ListKeyOperationsRequest(key_id=kid), timeout=30).operations
        assert [(o.kind, o.authorized_by, o.state) for o in ops] == [("refresh", "schedule", "done")]
        digest = os.urandom(32)
        sig = team.sign(kid, digest)
        verify_independently(info.public_key, sig.der, digest)
