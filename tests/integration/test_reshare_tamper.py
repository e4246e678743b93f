"""Tampering in refresh and reshare sessions on real processes, through the relay (issue 11,
"Tamper tests through the relay"): a node that alters its own round messages (test-mode fault
injection, ``mpc_node/faults.py``) makes the operation fail, naming it; no node switches epochs,
the public key never changes, and the key goes on signing in its old epoch. Once the fault is
gone, the same operation proposed again succeeds.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from mpcnet.client import MpcClient, SigningTeam

from .conftest import running_cluster
from .test_cluster_api import verify_independently

N, T = 3, 2


@pytest.fixture(scope="module")
def tc(tmp_path_factory):
    with running_cluster(tmp_path_factory, "reshare-tamper", N, T, fault_files=True) as c:
        yield c


def _set_fault(c, i: int, **doc) -> None:
    (c.lay.dir / "faults" / f"node-{i}.json").write_text(json.dumps(doc))


def _clear(c, i: int) -> None:
    (c.lay.dir / "faults" / f"node-{i}.json").unlink(missing_ok=True)


@pytest.mark.parametrize(
    ("rnd", "action"),
    [
        (2, "tamper-payload"),  # Feldman vector / shares / PoK altered before signing: the protocol's checks
        (3, "tamper-payload"),  # public-state digest and base-OT replies altered
        (2, "tamper-signature"),  # altered after signing: the envelope check
    ],
)
def test_a_tampering_node_fails_the_refresh_and_nothing_changes(tc, rnd: int, action: str) -> None:
    with MpcClient.from_cluster(tc.lay.dir, identity="admin1", timeout=120) as a1, \
            MpcClient.from_cluster(tc.lay.dir, identity="admin2", timeout=120) as a2, \
            SigningTeam.from_cluster(tc.lay.dir, timeout=120) as team:
        key = a1.create_key("")
        before = a1.get_key(key.key_id)
        _set_fault(tc, 2, protocol="reshare", round=rnd, action=action)
        try:
            p = a1.refresh_key(key.key_id, "tamper test")
            done = a2.approve_lifecycle(p.proposal_id, expect_digest=p.digest)
            assert done.state == "applied" and len(done.operations) == 1
            op = a1.wait_key_operation(done.operations[0], 120)
            assert op.state == "failed", op
            assert "node 2" in op.error, op.error  # the culprit is named
        finally:
            _clear(tc, 2)
        after = a1.get_key(key.key_id)
        assert (after.public_key, after.chain_code, after.epoch, after.committee) == (
            before.public_key, before.chain_code, before.epoch, before.committee,
        )
        digest = hashlib.sha256(f"after a tampered round {rnd}".encode()).digest()
        sig = team.sign(key.key_id, digest)
        verify_independently(key.public_key, sig.der, digest)
        # the same change proposed again, without the fault, succeeds
        p = a1.refresh_key(key.key_id, "again")
        done = a2.approve_lifecycle(p.proposal_id, expect_digest=p.digest)
        assert a1.wait_key_operation(done.operations[0], 120).state == "done"
        assert a1.get_key(key.key_id).epoch == before.epoch + 1
        sig = team.sign(key.key_id, digest)
        verify_independently(key.public_key, sig.der, digest)
