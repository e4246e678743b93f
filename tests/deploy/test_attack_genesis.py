"""Attacks on the genesis document (issue 13, R1): signatures moved between documents and
clusters, a repeated signature counted twice, the admin set or CA swapped after signing, a
threshold outside [2, n], duplicated roster entries (by key or by endpoint), ``--expect-digest``.

Only the duplicate endpoint was accepted before its fix (two roster entries dialled at one
address: one of them is never reachable, so the cluster has one share-holder fewer than the
admins signed for); the others are kept here as the attacker's regression tests.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance._checks import raw_public_key
from governance.policy import AdminSet
from mpcnet.client.cli_deploy import load_signing_key
from mpcnet.common.enrolment import (
    EnrolmentError,
    EnrolmentRequest,
    IdentityRequest,
    build_enrolment_request,
    issue_for_request,
    load_request,
)
from mpcnet.common.genesis import Genesis, PolicySpec, build_genesis, load_genesis, sign_genesis, verify_genesis

from .test_enrolment import World, enrol_world, node


@pytest.fixture(scope="module")
def built_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return enrol_world(tmp_path_factory.mktemp("attack-genesis"), ports=[18100 + i for i in range(4)])


@pytest.fixture
def world(built_world: World, tmp_path: Path) -> World:
    """A private copy of the module's world (tests edit files)."""
    shutil.copytree(built_world.root, tmp_path / "w", symlinks=True)
    return World(tmp_path / "w")


class _Signer:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data)


def _keys(w: World) -> dict[str, Ed25519PrivateKey]:
    return {n: load_signing_key(w.host(n) / "signing.key") for n in ("admin1", "admin2")}


def _signed(w: World) -> Genesis:
    g, k = load_genesis(w.ex / "genesis.json"), _keys(w)
    return sign_genesis(sign_genesis(g, "admin1", k["admin1"]), "admin2", k["admin2"])


def _build(w: World, nodes: list[tuple[EnrolmentRequest, bytes]], threshold: int = 2, **kw: Any) -> Genesis:
    people = {n: load_request(w.request(n)) for n in ("admin1", "admin2", "approver1", "approver2", "requester1")}
    assert all(isinstance(p, IdentityRequest) for p in people.values())
    return build_genesis(
        threshold=threshold, ca_pem=w.ca.cert.read_bytes(), admins=[people["admin1"], people["admin2"]], admin_quorum=2,  # type: ignore[list-item]
        approvers=[people["approver1"], people["approver2"]], requesters=[people["requester1"]], policy=PolicySpec(2),  # type: ignore[list-item]
        nodes=nodes, **kw,
    )


def _node_request(w: World, name: str, endpoint: str) -> tuple[EnrolmentRequest, bytes]:
    idk = Ed25519PrivateKey.generate()
    enc = x25519.X25519PrivateKey.generate().public_key().public_bytes_raw()
    req = build_enrolment_request("node", name, endpoint, _Signer(idk), raw_public_key(idk), enc, ec.generate_private_key(ec.SECP256R1()))
    return req, issue_for_request(w.ca, req)


def _existing(w: World, i: int) -> tuple[EnrolmentRequest, bytes]:
    req = load_request(w.request(f"node-{i}"))
    assert isinstance(req, EnrolmentRequest)
    return req, w.cert(f"node-{i}").read_bytes()


def test_a_repeated_signature_counts_once(world: World) -> None:
    g = _signed(world)
    one = replace(g, signatures=(g.signatures[0], g.signatures[0]))
    with pytest.raises(EnrolmentError, match="too few"):
        verify_genesis(one)
    pol = g.initial_policy
    with pytest.raises(EnrolmentError, match="too few"):
        verify_genesis(replace(g, initial_policy=replace(pol, signatures=(pol.signatures[0],) * 2)))


def test_signatures_do_not_move_to_another_cluster(world: World) -> None:
    g = _signed(world)
    nodes = [_existing(world, i) for i in (1, 2, 3)]
    other = _build(world, nodes, cluster_id=b"\x07" * 32)  # same people, same nodes: another cluster
    moved = replace(other, initial_policy=replace(other.initial_policy, signatures=g.initial_policy.signatures),
                    roster_history=(replace(other.roster_change, signatures=g.roster_change.signatures),), signatures=g.signatures)
    with pytest.raises(EnrolmentError, match=r"signature.*does not verify"):
        verify_genesis(moved)


def test_admin_set_swapped_after_signing_is_refused(world: World) -> None:
    g = _signed(world)
    attacker = Ed25519PrivateKey.generate()
    admins = dict(g.admin_set.admins)
    admins["admin2"] = raw_public_key(attacker)
    swapped = replace(g, admin_set=AdminSet(admins, g.admin_set.quorum, g.admin_set.cluster_id))
    with pytest.raises(EnrolmentError):
        verify_genesis(swapped)
    with pytest.raises(EnrolmentError):  # the attacker's own signature as admin2 does not help
        verify_genesis(sign_genesis(swapped, "admin2", attacker))


def test_threshold_outside_2_to_n_is_refused(world: World) -> None:
    nodes = [_existing(world, i) for i in (1, 2, 3)]
    for t in (0, 1, 4):
        with pytest.raises(EnrolmentError, match="threshold"):
            _build(world, nodes, threshold=t)


def test_duplicate_roster_entries_are_refused(world: World) -> None:
    one = _existing(world, 1)
    with pytest.raises(EnrolmentError, match=r"node\[1\]|roster"):
        _build(world, [one, one, _existing(world, 2)])
    same_endpoint = _node_request(world, "node-9", one[0].endpoint)
    with pytest.raises(EnrolmentError, match=r"node\[1\]\.endpoint: .*node\[0\]"):
        _build(world, [one, same_endpoint, _existing(world, 2)])
    upper = _node_request(world, "node-8", one[0].endpoint.upper())  # LOCALHOST: the same host
    with pytest.raises(EnrolmentError, match=r"node\[1\]\.endpoint"):
        _build(world, [one, upper, _existing(world, 2)])


def test_join_with_another_expect_digest_is_refused(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert world.sign("admin1") == 0 and world.sign("admin2") == 0
    d = world.host("node-1")
    capsys.readouterr()
    assert node("join", "--dir", str(d), "--genesis", str(world.ex / "genesis.json"), "--cert", str(world.cert("node-1")),
                "--ca", str(world.ex / "ca.pem"), "--expect-digest", "00" * 32) == 1
    assert "expect_digest" in capsys.readouterr().err
    assert not (d / "config.json").exists()


def test_expect_digest_is_required_to_match_before_signing(world: World, tmp_path: Path) -> None:
    g = load_genesis(world.ex / "genesis.json")
    k = _keys(world)
    with pytest.raises(EnrolmentError, match="expect_digest"):
        sign_genesis(g, "admin1", k["admin1"], expect_digest=b"\x00" * 32)
    sign_genesis(g, "admin1", k["admin1"], expect_digest=g.digest())


@pytest.mark.parametrize("role", ["coordinator", "admin"])
def test_node_refuses_to_start_with_its_name_under_another_role(world: World, role: str) -> None:
    """The start-up check (mpc_node.main.check_own_certificate) compares the OU too, not only the CN."""
    from mpc_node import main as node_main
    from mpc_node.config import load_node_config
    from mpcnet.common.enrolment import load_tls_key, make_csr
    from mpcnet.common.pki import PkiError, sign_csr

    assert world.sign("admin1") == 0 and world.sign("admin2") == 0
    assert world.join(1) == 0
    d = world.host("node-1")
    (d / "tls.pem").write_bytes(sign_csr(world.ca, make_csr(load_tls_key(d / "tls.key"), role, "node-1", ("localhost",))))
    with pytest.raises(PkiError, match=f"names {role} 'node-1', not node 'node-1'"):
        node_main.check_own_certificate(load_node_config(d / "config.json"))
