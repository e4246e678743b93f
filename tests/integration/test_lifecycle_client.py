"""The client side of the key lifecycle (issue 11 item 6) on real processes: the SDK and
``mpc roster show`` verify the cluster's signed roster; then, once the coordinator runs roster
changes and key operations, one key goes through remove node -> add node (the add-node flow of
``mpc-cluster add-node``) -> refresh -> rotate a node's keys, signing with the same public key
after each step (skipped while the coordinator answers UNIMPLEMENTED)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json

import grpc
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from mpcnet.client import MpcClient, MpcError, SigningTeam, cli
from mpcnet.cluster.addnode import add_node_to_cluster, cert_fingerprint
from mpcnet.cluster.launcher import LocalCluster

from .conftest import running_cluster


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory):
    with running_cluster(tmp_path_factory, "lifecycle-2of3", 3, 2) as c:
        yield c


def _verify(public_key: bytes, der: bytes, digest: bytes) -> None:
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), public_key)
    pub.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def test_the_roster_is_verified_against_the_clients_admin_set(small: LocalCluster) -> None:
    with MpcClient.from_cluster(small.lay.dir, identity="auditor1") as a:
        view = a.roster()
    info = json.loads(small.lay.info_path.read_text())
    assert view.version == 1 and view.active() == (1, 2, 3)
    for n in info["nodes"]:
        e = view.roster.entry(n["index"])
        assert e is not None and e.name == n["name"] and e.endpoint == n["endpoint"]
        assert e.tls_fingerprint == cert_fingerprint(small.lay.cert(n["name"]).cert)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["--cluster", str(small.lay.dir), "--as", "auditor1", "roster", "show", "--json"])
    assert code == 0 and json.loads(out.getvalue())["digest"] == view.roster.digest().hex()


def test_remove_add_refresh_rotate_keep_one_public_key(small: LocalCluster) -> None:
    d = small.lay.dir
    with MpcClient.from_cluster(d, identity="admin1", timeout=120) as a1, \
            MpcClient.from_cluster(d, identity="admin2", timeout=120) as a2, \
            SigningTeam.from_cluster(d, timeout=120) as team:
        key = a1.create_key("")

        def sign(step: str) -> None:
            digest = hashlib.sha256(step.encode()).digest()
            sig = team.sign(key.key_id, digest)
            _verify(key.public_key, sig.der, digest)
            assert a1.get_key(key.key_id).public_key == key.public_key

        def apply(p: object) -> None:
            done = a2.approve_lifecycle(p.proposal_id, expect_digest=p.digest)  # type: ignore[attr-defined]
            assert done.state == "applied", done
            for op in done.operations:
                assert a1.wait_key_operation(op, 120).state == "done"

        sign("keygen")
        try:
            p = a1.remove_node(3)
        except MpcError as e:
            if e.code == grpc.StatusCode.UNIMPLEMENTED:
                pytest.skip(f"the coordinator does not run roster changes yet ({e.message})")
            raise
        apply(p)
        assert a1.roster().revoked() == (3,)
        sign("removed node 3")
        summary = add_node_to_cluster(small.lay, small.start, timeout=120, progress=lambda _m: None)
        assert summary["index"] == 4 and a1.get_key(key.key_id).committee == (1, 2, 4)
        sign("added node 4")
        apply(a1.refresh_key(key.key_id, "test"))
        assert a1.get_key(key.key_id).epoch == 3
        sign("refreshed")
        apply(a1.rotate_node_keys(1, small.lay.ca))
        assert a1.roster().roster.entry(1).key_version == 2  # type: ignore[union-attr]
        sign("rotated node 1")


def test_an_admin_pushes_a_roster_change_to_every_node_directly(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A signed change the coordinator never saw reaches every node from the admin (as policy
    push): installed once, then 'already'; each node then reports the longer history."""
    from governance.roster import RosterChange, SignedRosterChange, revoke_node, sign_roster_change
    from mpcnet.client.identities import load_identity
    from mpcnet.wire.mpc.v1 import node_pb2

    with running_cluster(tmp_path_factory, "lifecycle-push", 3, 2) as c, \
            MpcClient.from_cluster(c.lay.dir, identity="admin1", timeout=60) as a1:
        view = a1.roster()
        change = RosterChange(revoke_node(view.roster, 3), view.roster.digest(), a1.admin_set.digest())  # type: ignore[union-attr]
        admins = [load_identity(c.lay.dir, n) for n in ("admin1", "admin2")]
        signed = SignedRosterChange(change, tuple(sign_roster_change(change, a.name, a.signing_key) for a in admins))
        history = [*view.history, signed]
        assert a1.push_roster(history) == {"node-1": "installed 1", "node-2": "installed 1", "node-3": "installed 1"}
        assert set(a1.push_roster(history).values()) == {"already"}
        held = a1._node_stub("node-1").GetRoster(node_pb2.GetRosterRequest(), timeout=10).signed_changes
        assert [bytes(b) for b in held][-1] == signed.to_bytes()
        assert set(a1.push_roster(view.history).values()) == {"ahead: holds roster version 2, this history ends at version 1"}


def test_a_labelled_key_is_reshared_to_an_added_node(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The joining node learns the key from the admin-signed operation, which carries no label:
    the reshare must not depend on the label the old nodes stored (it did once: "party 3 runs
    the reshare with other parameters")."""
    with running_cluster(tmp_path_factory, "lifecycle-label", 2, 2) as c, \
            MpcClient.from_cluster(c.lay.dir, identity="admin1", timeout=120) as a1, \
            SigningTeam.from_cluster(c.lay.dir, timeout=120) as team:
        key = a1.create_key("treasury")
        try:
            a1.get_lifecycle_proposal("0" * 32)
        except MpcError as e:
            if e.code == grpc.StatusCode.UNIMPLEMENTED:
                pytest.skip(f"the coordinator does not run lifecycle proposals yet ({e.message})")
        try:
            summary = add_node_to_cluster(c.lay, c.start, timeout=120, progress=lambda _m: None)
        except MpcError as e:
            if e.code == grpc.StatusCode.UNIMPLEMENTED:
                pytest.skip(f"the coordinator does not run roster changes yet ({e.message})")
            raise
        assert summary["index"] == 3 and a1.get_key(key.key_id).committee == (1, 2, 3)
        digest = hashlib.sha256(b"labelled").digest()
        _verify(key.public_key, team.sign(key.key_id, digest).der, digest)
