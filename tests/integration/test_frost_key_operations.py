"""Refresh and reshare of FROST keys across real processes (issue 16 item 5).

A 3-of-5 cluster creates an Ed25519 and a BIP340 (Taproot) key; two admins refresh each through
the SDK (``refresh_key`` builds a KeyOperation v2 naming the key's scheme; the second admin's
``approve_lifecycle`` checks it against the key), the coordinator runs it, and the key signs through
approvals at epoch 1 (``SigningTeam.sign_schnorr``: the SDK verifies the signature with independent
libraries, and so does this test: OpenSSL for Ed25519, coincurve x-only for BIP340). Then the Ed25519
key is reshared 3-of-5 -> 2-of-4 and signs at epoch 2 with the new committee only.
"""

from __future__ import annotations

import hashlib
import os

import coincurve
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mpcnet.client import MpcClient, SigningTeam
from mpcnet.wire.mpc.v1 import coordinator_pb2, node_pb2

from .conftest import coordinator_handles, running_cluster

N, T = 5, 3


@pytest.fixture(scope="module")
def fc(tmp_path_factory):
    with running_cluster(tmp_path_factory, "frost-keyops-3of5", N, T) as c:
        yield c


@pytest.fixture(scope="module")
def admins(fc):
    with MpcClient.from_cluster(fc.lay.dir, identity="admin1", timeout=120) as a1, \
            MpcClient.from_cluster(fc.lay.dir, identity="admin2", timeout=120) as a2:
        yield a1, a2


@pytest.fixture(scope="module")
def team(fc):
    with SigningTeam.from_cluster(fc.lay.dir, timeout=120) as t:
        yield t


def _apply(admins, proposal) -> None:
    """admin2 approves admin1's proposal; the operation runs to done."""
    a1, a2 = admins
    applied = a2.approve_lifecycle(proposal.proposal_id)
    assert applied.state == "applied" and len(applied.operations) == 1, applied
    st = a1.wait_key_operation(applied.operations[0], timeout=120)
    assert st.state == "done", st.error


def _sign(team, key, signers_count: int):
    if key.scheme == "ed25519":
        msg = b"transfer 1 SOL " + os.urandom(8)
        sig = team.sign_schnorr(key.key_id, message=msg)
        Ed25519PublicKey.from_public_bytes(key.public_key).verify(sig.signature, msg)  # raises if invalid
    else:
        digest = hashlib.sha256(os.urandom(32)).digest()
        sig = team.sign_schnorr(key.key_id, digest=digest)
        assert coincurve.PublicKeyXOnly(sig.public_key).verify(sig.signature, digest)
    assert len(sig.signers) == signers_count
    return sig


def test_frost_keys_are_refreshed_then_sign_at_epoch_1_and_reshared_to_2_of_4(fc, admins, team) -> None:
    a1, _ = admins
    keys = [a1.create_key("frost-ed", scheme="ed25519"), a1.create_key("frost-tr", scheme="schnorr-secp256k1-bip340")]
    for key in keys:
        _apply(admins, a1.refresh_key(key.key_id, reason="integration test"))
        info = a1._stub.GetKey(coordinator_pb2.GetKeyRequest(key_id=key.key_id), timeout=30)
        assert info.epoch == 1 and list(info.committee) == [1, 2, 3, 4, 5] and info.scheme == key.scheme
        assert info.public_key == key.public_key
        _sign(team, key, T)
    ed = keys[0]
    _apply(admins, a1.reshare_key(ed.key_id, 2, [1, 2, 3, 4], reason="integration test"))
    info = a1._stub.GetKey(coordinator_pb2.GetKeyRequest(key_id=ed.key_id), timeout=30)
    assert info.epoch == 2 and list(info.committee) == [1, 2, 3, 4] and info.threshold == 2
    sig = _sign(team, ed, 2)
    assert 5 not in sig.signers
    with coordinator_handles(fc) as hs:  # node 5 left the committee: no share, no fresh nonce of the key
        listed = {k.key_id: k for k in hs[5].stub.ListKeys(node_pb2.NodeListKeysRequest(), timeout=30).keys}
        assert listed[ed.key_id].epoch == 2 and list(listed[ed.key_id].committee) == [1, 2, 3, 4]
        assert listed[ed.key_id].scheme == "ed25519"
