"""The coordinator's refresh/reshare of FROST keys (issue 16 item 5: coordinator/keyops.py,
coordinator/frost_keyops.py) driving three in-process nodes of a 2-of-3 cluster (no gRPC).

An admin-proposed refresh of an Ed25519 and a BIP340 key runs to ``done``; the coordinator holds
the new epoch's public shares (checked against the receipts' state digest) and has discarded the
old epoch's nonce commitments; a signature made at the new epoch aggregates against the recorded
shares. A coordinator killed between the receipts and the decision records the shares after its
restart from ``GetPendingEpoch``. Reported public shares that disagree are refused naming the
field and the node.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.db import KeyRecord, now_ms
from coordinator.frost_keyops import PublicSharesRefused, new_epoch_public_shares
from coordinator.nonce_store import NonceRow
from crypto_core.frost.keyshare import FrostKeyShare
from crypto_core.frost.public import FrostPublic
from governance.approval import SCHEME_BIP340, SCHEME_ED25519
from governance.keyop import KeyOperation, KeyOpKind, SignedKeyOperation, epoch_state_digest, sign_key_operation
from mpc_node.service import NodeService
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.wire.mpc.v1 import node_pb2
from tests.network.frost_util import frost_dkg
from tests.network.keyops_util import Handle, close, services
from tests.network.test_frost_keyops_node import sign_at

from .test_keyops_orchestration import Coordinator, Crash, _propose

SCHEMES = (SCHEME_ED25519, SCHEME_BIP340)
FULL = (1, 2, 3)


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("frost-keyops-coord"), 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = services(lay)
    yield out
    close(out)


@pytest.fixture
def coord(tmp_path: Path, lay: Layout, svcs: dict[int, NodeService]) -> Iterator[Coordinator]:
    c = Coordinator(tmp_path, lay, svcs, {i: Handle(s) for i, s in svcs.items()})
    yield c
    c.close()


def _frost_key(coord: Coordinator, scheme: str) -> tuple[node_pb2.DkgResult, KeyRecord]:
    k = frost_dkg(coord.svcs, scheme, 2, b"keyops")
    rec = KeyRecord(k.key_id, "keyops", bytes(k.public_key), b"", k.threshold, k.parties, "active", now_ms(), "kg-" + os.urandom(4).hex(),
                    scheme)
    coord.db.add_key(rec, tuple(bytes(s) for s in k.public_shares))
    return k, rec


def _op(coord: Coordinator, k: node_pb2.DkgResult, old_epoch: int = 0, **kw: Any) -> SignedKeyOperation:
    base: dict[str, Any] = dict(kind=KeyOpKind.REFRESH, old=FULL, new=FULL, old_t=2, new_t=2)
    base.update(kw)
    op = KeyOperation(
        coord.lay.governance()[0].digest(), os.urandom(16), base["kind"], k.key_id, bytes(k.public_key), b"", old_epoch,
        base["old_t"], base["old"], base["new_t"], base["new"], coord.svcs[1].roster_state.version, "test", scheme=k.scheme,
    )
    return SignedKeyOperation(op, tuple(sign_key_operation(op, a, load_identity(coord.lay.dir, a).signing_key)
                                        for a in ("admin1", "admin2")))


def _commitments(coord: Coordinator, k: node_pb2.DkgResult, epoch: int) -> None:
    """Fresh commitments of (key, epoch) in the coordinator's table, as a refill leaves them."""
    rows = []
    for i, s in coord.svcs.items():
        for c in s.MakeNonces(node_pb2.MakeNoncesRequest(key_id=k.key_id, epoch=epoch, count=2), None).commitments:
            rows.append(NonceRow(bytes(c.nonce_id), k.key_id, epoch, i, bytes(c.hiding), bytes(c.binding)))
    coord.db.add_fresh_nonces(rows, now_ms())


def _node_public_shares(svc: NodeService, key_id: bytes) -> tuple[bytes, ...]:
    raw = svc.store.get_key_share(key_id)
    assert raw
    return FrostKeyShare.from_bytes(raw).public_shares


@pytest.mark.parametrize("scheme", SCHEMES)
def test_admin_refresh_records_the_new_public_shares_and_signs_at_epoch_1(coord: Coordinator, scheme: str) -> None:
    k, rec = _frost_key(coord, scheme)
    _commitments(coord, k, 0)
    assert sum(coord.db.fresh_nonce_counts(k.key_id, 0).values()) == 6
    signed = _op(coord, k)
    op_id = _propose(coord, signed)
    st = coord.wait(op_id)
    assert st.state == "done", st.error
    shares = coord.db.frost_public_shares(k.key_id, 1)
    assert shares and all(_node_public_shares(s, k.key_id) == shares for s in coord.svcs.values())
    assert shares != coord.db.frost_public_shares(k.key_id, 0)
    assert coord.db.fresh_nonce_counts(k.key_id, 0) == {}  # the old epoch's commitments are never offered
    assert all(s.store.count_fresh_nonces(k.key_id) == 0 for s in coord.svcs.values())
    epoch, committee, excluded = coord.ops.signing(coord.db.get_key(k.key_id) or rec)
    assert (epoch, committee, excluded) == (1, FULL, set())
    sign_at(coord.lay, coord.svcs, k, FrostPublic(scheme, 2, 3, bytes(k.public_key), shares), (2, 3), FULL, 1)


def test_a_coordinator_killed_before_the_decision_records_the_shares_after_restart(coord: Coordinator) -> None:
    k, _ = _frost_key(coord, SCHEME_ED25519)
    signed = _op(coord, k)

    def die(point: str) -> None:
        if point == "receipts":
            raise Crash(point)

    coord.ops.fault = die
    with pytest.raises(Crash):
        coord.ops.start(signed, "admin-quorum", "admin1", wait=True)
    assert coord.db.frost_public_shares(k.key_id, 1) == ()
    coord.restart()
    coord.ops.resume(wait=True)
    st = coord.ops.get(signed.operation.proposal_id)
    assert st.state == "done", st.error
    shares = coord.db.frost_public_shares(k.key_id, 1)
    assert shares == _node_public_shares(coord.svcs[1], k.key_id)
    sign_at(coord.lay, coord.svcs, k, FrostPublic(SCHEME_ED25519, 2, 3, bytes(k.public_key), shares), (1, 3), FULL, 1)


def test_a_quorum_change_2_of_3_to_2_of_2_through_the_coordinator(coord: Coordinator) -> None:
    k, rec = _frost_key(coord, SCHEME_BIP340)
    st = coord.wait(_propose(coord, _op(coord, k, kind=KeyOpKind.RESHARE, new=(1, 3))))
    assert st.state == "done", st.error
    epoch, committee, excluded = coord.ops.signing(coord.db.get_key(k.key_id) or rec)
    assert (epoch, committee, excluded) == (1, (1, 3), {2})
    shares = coord.db.frost_public_shares(k.key_id, 1)
    assert len(shares) == 2 and not coord.svcs[2].store.get_key_share(k.key_id)
    sign_at(coord.lay, coord.svcs, k, FrostPublic(SCHEME_BIP340, 2, 2, bytes(k.public_key), shares), (1, 3), (1, 3), 1)


def test_reported_public_shares_must_agree_and_match_the_receipts() -> None:
    from crypto_core.frost.group import ED25519

    pub = [ED25519.encode(ED25519.base_mul(x)) for x in (3, 5, 7)]  # f(x) = 1 + 2x: on a line through PK = 1*G
    pk = ED25519.encode(ED25519.base_mul(1))
    from crypto_core.frost.public import frost_key_id

    op = KeyOperation(bytes(32), bytes(16), KeyOpKind.REFRESH, frost_key_id(SCHEME_ED25519, pk), pk, b"", 0, 2, FULL, 2, FULL, 1,
                      scheme=SCHEME_ED25519)
    digest = epoch_state_digest(pk, b"", 2, FULL, pub, SCHEME_ED25519)
    assert new_epoch_public_shares(op, digest, {i: tuple(pub) for i in FULL}) == tuple(pub)
    FrostPublic(SCHEME_ED25519, 2, 3, pk, tuple(pub)).validate()
    cases = [
        ({1: tuple(pub), 2: tuple(pub)}, "node 3 of the new committee reported none"),
        ({1: tuple(pub), 2: tuple(reversed(pub)), 3: tuple(pub)}, "node 2 reported other public shares"),
        ({i: tuple(pub[:2]) for i in FULL}, "2 public shares for a committee of 3"),
    ]
    for reported, why in cases:
        with pytest.raises(PublicSharesRefused, match=f"^reshare_result.public_shares: {why}"):
            new_epoch_public_shares(op, digest, reported)
    with pytest.raises(PublicSharesRefused, match="state digest"):
        new_epoch_public_shares(op, bytes(32), {i: tuple(pub) for i in FULL})
    bad = [pub[0], pub[1], ED25519.encode(ED25519.base_mul(8))]  # consistent reports, off the line: not a sharing of the key
    with pytest.raises(PublicSharesRefused, match="not a sharing of the key"):
        new_epoch_public_shares(op, epoch_state_digest(pk, b"", 2, FULL, bad, SCHEME_ED25519), {i: tuple(bad) for i in FULL})


def test_a_revocation_reshares_frost_keys_without_the_revoked_node(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """``follow_roster`` (which skipped FROST keys before) starts the roster-implied reshare of a
    FROST key whose committee holds the revoked node; the key then signs without it."""
    from governance.roster import RosterChange, SignedRosterChange, revoke_node, sign_roster_change

    lay = prepare(tmp_path_factory.mktemp("frost-keyops-revoke"), 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)
    svcs = services(lay)
    coord = Coordinator(tmp_path, lay, svcs, {i: Handle(s) for i, s in svcs.items()})
    try:
        k, rec = _frost_key(coord, SCHEME_ED25519)
        admins = lay.governance()[0]
        old = svcs[1].roster_state.current()
        assert old is not None
        change = RosterChange(revoke_node(old, 2), old.digest(), admins.digest())
        signed = SignedRosterChange(change, tuple(
            sign_roster_change(change, a, load_identity(lay.dir, a).signing_key) for a in ("admin1", "admin2")
        ))
        for s in svcs.values():
            s.roster_state.install(signed.to_bytes(), actor="admin1")
        new = svcs[1].roster_state.current()
        assert new is not None
        ids = coord.ops.follow_roster(old, new)
        assert len(ids) == 1
        st = coord.wait(ids[0])
        assert st.state == "done" and st.authorized_by == "roster" and list(st.new_committee) == [1, 3], st.error
        epoch, committee, _ = coord.ops.signing(coord.db.get_key(k.key_id) or rec)
        assert (epoch, committee) == (1, (1, 3))
        shares = coord.db.frost_public_shares(k.key_id, 1)
        sign_at(lay, svcs, k, FrostPublic(SCHEME_ED25519, 2, 2, bytes(k.public_key), shares), (1, 3), (1, 3), 1)
    finally:
        coord.close()
        close(svcs)


def test_an_operation_naming_another_scheme_is_refused_naming_the_field(coord: Coordinator) -> None:
    """A proposal for a bip340 key encoded as an ECDSA operation (its 33-byte key, any chain code)
    is refused at the proposal, naming ``scheme``; nothing runs."""
    from coordinator.keyops import KIND
    from mpcnet.common.rpc import RpcError

    k, _ = _frost_key(coord, SCHEME_BIP340)
    good = _op(coord, k).operation
    op = dataclasses.replace(good, scheme="ecdsa-secp256k1", chain_code=bytes(32))
    signed = SignedKeyOperation(op, (sign_key_operation(op, "admin1", load_identity(coord.lay.dir, "admin1").signing_key),))
    with pytest.raises(RpcError) as ei:
        coord.lifecycle.propose(KIND, signed.to_bytes(), "admin1", "signed_operation")
    assert ei.value.message.startswith("signed_operation.operation.scheme: is ecdsa-secp256k1"), ei.value.message
    assert coord.db.list_key_operations(k.key_id) == []
