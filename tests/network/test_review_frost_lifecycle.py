"""Review (issue 16, RC): attacks on the lifecycle and backups of FROST keys, on the node.

Three in-process :class:`NodeService` instances of a 2-of-3 cluster; the test plays a hostile
coordinator. It tries: nonces of the old epoch signing after a refresh (committed everywhere, or
only on some nodes: the half-committed window), a KeyOperation v1 (ECDSA encoding) or another
scheme's operation naming a FROST key (a downgrade), and a restored FROST share making nonces or
signing before its follow-up refresh. Each attack must be refused with a clear error naming the
field (never INTERNAL) and change nothing; the key then signs at its new epoch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import grpc
import pytest

from coordinator.frost_keyops import new_epoch_public_shares
from crypto_core.frost.keyshare import FrostKeyShare
from governance.approval import SCHEME_BIP340, SCHEME_ED25519
from governance.keyop import KeyOperation, KeyOpKind, SignedKeyOperation, sign_key_operation, verify_commit_certificate
from governance.recovery import (
    Officer,
    PiecePurpose,
    RecoveryConfig,
    RecoveryConfigChange,
    SignedRecoveryConfigChange,
    sign_recovery_config_change,
)
from mpc_node.service import NodeService
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common import agekeys
from mpcnet.common.backup import officer_deliveries
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .frost_util import for_signer, frost_dkg, schnorr_request
from .keyops_util import close, run, services
from .test_frost_keyops_node import sign_at
from .test_frost_node_backup import N, _bundle, _order, _wipe

SCHEMES = (SCHEME_ED25519, SCHEME_BIP340)
Code = grpc.StatusCode
T = 2


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("review-frost-lifecycle"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = services(lay)
    yield out
    close(out)


@pytest.fixture(scope="module")
def officers() -> list[tuple[bytes, bytes]]:
    return [agekeys.generate() for _ in range(3)]


@pytest.fixture(scope="module")
def config(lay: Layout, svcs: dict[int, NodeService], officers: list[tuple[bytes, bytes]]) -> SignedRecoveryConfigChange:
    cfg = RecoveryConfig(1, tuple(Officer(f"officer{k}", pub) for k, (_, pub) in enumerate(officers, 1)), 2, 3, 0)
    change = RecoveryConfigChange(svcs[1].gov.governance_root, None, cfg)
    sigs = tuple(sign_recovery_config_change(change, a, load_identity(lay.dir, a).signing_key) for a in ("admin1", "admin2"))
    signed = SignedRecoveryConfigChange(change, sigs)
    for s in svcs.values():
        assert s.InstallRecoveryConfig(node_pb2.InstallRecoveryConfigRequest(history=[signed.to_bytes()]), None).installed
    return signed


def _refresh_op(lay: Layout, svc: NodeService, key: node_pb2.DkgResult, **kw: object) -> bytes:
    fields: dict[str, object] = dict(
        governance_root=svc.gov.governance_root, op_id=os.urandom(16), kind=KeyOpKind.REFRESH, key_id=key.key_id,
        public_key=bytes(key.public_key), chain_code=b"", old_epoch=0, old_threshold=T, old_committee=(1, 2, 3),
        new_threshold=T, new_committee=(1, 2, 3), roster_version=1, reason="review", scheme=key.scheme,
    )
    fields.update(kw)
    op = KeyOperation(**fields)  # type: ignore[arg-type]
    sigs = tuple(sign_key_operation(op, a, load_identity(lay.dir, a).signing_key) for a in ("admin1", "admin2"))
    return SignedKeyOperation(op, sigs).to_bytes()


def _refresh(svcs: dict[int, NodeService], op: bytes, label: bytes = b"frost") -> tuple[bytes, list[bytes]]:
    sid = os.urandom(32)
    res = run(svcs, sid, [1, 2, 3], reshare=node_pb2.ReshareParams(operation=op, dealers=[1, 2, 3], key_label=label))
    assert all(not isinstance(r, RpcError) and r.finished for r in res.values()), res
    return sid, [r.reshare_result.receipt for r in res.values()]


def _commit(svcs: dict[int, NodeService], key_id: bytes, sid: bytes, receipts: list[bytes], to: tuple[int, ...]) -> None:
    for i in to:
        svcs[i].CommitEpoch(node_pb2.CommitEpochRequest(key_id=key_id, session_id=sid, receipts=receipts), None)


def _nonces(svcs: dict[int, NodeService], key: node_pb2.DkgResult, signers: tuple[int, ...], epoch: int) -> list[node_pb2.NonceCommitment]:
    return [
        svcs[i].MakeNonces(node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=epoch, count=1), None).commitments[0] for i in signers
    ]


def _share(svc: NodeService, key_id: bytes) -> FrostKeyShare:
    raw = svc.store.get_key_share(key_id)
    assert raw
    return FrostKeyShare.from_bytes(raw)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_old_epoch_nonces_never_sign_after_a_refresh(lay: Layout, svcs: dict[int, NodeService], scheme: str) -> None:
    key = frost_dkg(svcs, scheme, T)
    old = _nonces(svcs, key, (1, 2), 0)
    assert svcs[1].Health(node_pb2.NodeHealthRequest(), None).nonces >= 1
    sid, receipts = _refresh(svcs, _refresh_op(lay, svcs[1], key))
    # between the session's end and the commit, the old epoch still signs (the key is still at epoch 0)
    _commit(svcs, key.key_id, sid, receipts, (1, 2, 3))
    for i in (1, 2):
        assert svcs[i].store.count_fresh_nonces(key.key_id) == 0  # deleted at the commit
    for epoch in (0, 1):  # the old commitments, whichever epoch the hostile coordinator claims
        req = schnorr_request(lay, key, old, epoch=epoch)
        for i in (1, 2):
            with pytest.raises(RpcError) as e:
                svcs[i].SignSchnorr(for_signer(req, i), None)
            assert e.value.code in (Code.FAILED_PRECONDITION, Code.INVALID_ARGUMENT), e.value  # never INTERNAL
    # MakeNonces at the old epoch is refused naming the epoch; at the new one the key signs
    with pytest.raises(RpcError) as e:
        svcs[1].MakeNonces(node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=0, count=1), None)
    assert e.value.code == Code.FAILED_PRECONDITION and "epoch" in e.value.message
    sign_at(lay, svcs, key, _share(svcs[1], key.key_id).public(), (1, 2), (1, 2, 3), 1)


def test_a_half_committed_refresh_never_mixes_epochs(lay: Layout, svcs: dict[int, NodeService]) -> None:
    """Node 1 committed epoch 1, node 2 not yet: neither can be made to sign at the other's epoch."""
    key = frost_dkg(svcs, SCHEME_ED25519, T)
    sid, receipts = _refresh(svcs, _refresh_op(lay, svcs[1], key))
    pre2 = _nonces(svcs, key, (2,), 0)  # node 2, still at epoch 0
    _commit(svcs, key.key_id, sid, receipts, (1,))
    with pytest.raises(RpcError) as e:  # node 1 makes no epoch-0 nonce any more
        svcs[1].MakeNonces(node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=0, count=1), None)
    assert e.value.code == Code.FAILED_PRECONDITION
    with pytest.raises(RpcError) as e:  # node 2 makes no epoch-1 nonce yet
        svcs[2].MakeNonces(node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=1, count=1), None)
    assert e.value.code == Code.FAILED_PRECONDITION
    # a package mixing node 1's epoch-1 nonce and node 2's epoch-0 nonce: node 2 refuses at epoch 1
    new1 = _nonces(svcs, key, (1,), 1)
    req = schnorr_request(lay, key, [new1[0], pre2[0]], epoch=1)
    with pytest.raises(RpcError) as e:
        svcs[2].SignSchnorr(for_signer(req, 2), None)
    assert e.value.code == Code.FAILED_PRECONDITION
    _commit(svcs, key.key_id, sid, receipts, (2, 3))
    assert svcs[2].store.count_fresh_nonces(key.key_id) == 0
    sign_at(lay, svcs, key, _share(svcs[1], key.key_id).public(), (2, 3), (1, 2, 3), 1)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_downgraded_or_cross_scheme_operation_for_a_frost_key_is_refused(
    lay: Layout, svcs: dict[int, NodeService], scheme: str
) -> None:
    key = frost_dkg(svcs, scheme, T)
    other = SCHEME_BIP340 if scheme == SCHEME_ED25519 else SCHEME_ED25519
    # the same key id under the ECDSA (v1) encoding: 33-byte key and a chain code; or the other FROST scheme
    pk33 = bytes(key.public_key) if scheme == SCHEME_BIP340 else b"\x02" + bytes(key.public_key)
    sent = 0
    forged: tuple[dict[str, object], ...] = (
        {"scheme": "ecdsa-secp256k1", "public_key": pk33, "chain_code": bytes(32)},
        {"scheme": other, "public_key": pk33 if other == SCHEME_BIP340 else bytes(key.public_key)[1:]},
    )
    for kw in forged:
        op = _refresh_op(lay, svcs[1], key, **kw)
        start = node_pb2.StartSessionRequest(
            session_id=os.urandom(32), reshare=node_pb2.ReshareParams(operation=op, dealers=[1, 2, 3], key_label=b"frost")
        )
        for i in (1, 2, 3):  # every node refuses the start, naming the operation's field
            with pytest.raises(RpcError) as e:
                svcs[i].StartSession(start, None)
            assert e.value.code in (Code.INVALID_ARGUMENT, Code.FAILED_PRECONDITION), e.value
            assert e.value.message.startswith("reshare.operation."), e.value.message
        sent += 1
    assert sent == 2  # both forged operations were built and sent
    assert _share(svcs[1], key.key_id).epoch == 0  # nothing changed
    sign_at(lay, svcs, key, _share(svcs[1], key.key_id).public(), (1, 3), (1, 2, 3), 0)


def test_a_share_cached_across_a_commit_never_signs_a_new_epoch_nonce(
    lay: Layout, svcs: dict[int, NodeService], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node caches its active share and drops the cache only after the commit's transaction.
    In that window (forced here: node 1's drop_key is held back) a hostile coordinator gets no
    nonce of either epoch from it (the new epoch is refused against the cached share's, the old
    one by the store), so no share is ever made from the old secret with a new-epoch nonce (which
    would fail verification and blame an honest node); once dropped, the key signs at epoch 1."""
    key = frost_dkg(svcs, SCHEME_ED25519, T)
    sign_at(lay, svcs, key, _share(svcs[1], key.key_id).public(), (1, 2), (1, 2, 3), 0)  # node 1's share is cached
    sid, receipts = _refresh(svcs, _refresh_op(lay, svcs[1], key))
    with monkeypatch.context() as m:
        m.setattr(svcs[1], "drop_key", lambda key_id: None)  # the window between the commit and drop_key
        _commit(svcs, key.key_id, sid, receipts, (1,))
        assert svcs[1]._keys[key.key_id].epoch == 0  # stale cache
        for epoch in (0, 1):
            with pytest.raises(RpcError) as e:
                svcs[1].MakeNonces(node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=epoch, count=1), None)
            assert e.value.code == Code.FAILED_PRECONDITION and "epoch" in e.value.message
    svcs[1].drop_key(key.key_id)
    _commit(svcs, key.key_id, sid, receipts, (2, 3))
    sign_at(lay, svcs, key, _share(svcs[2], key.key_id).public(), (1, 2), (1, 2, 3), 1)


def _restart(svcs: dict[int, NodeService], lay: Layout, i: int) -> None:
    """Node ``i`` killed (its store and audit closed without any further write) and started again."""
    svcs[i].store.close()
    svcs[i].audit.close()
    svcs[i] = services(lay, only=i)[i]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_nodes_killed_mid_refresh_end_at_one_epoch_and_sign(lay: Layout, svcs: dict[int, NodeService], scheme: str) -> None:
    """Node 2 restarts after the session (pending share stored, nothing committed), node 3 after
    node 1 committed: the restarted nodes report the same public shares (what a restarted
    coordinator records: bound by the receipts' state digest), every node commits the one epoch
    (commit replays are idempotent) and the key signs at it; the old epoch's nonces are gone."""
    key = frost_dkg(svcs, scheme, T)
    old = _nonces(svcs, key, (2, 3), 0)
    op = _refresh_op(lay, svcs[1], key)
    sid, receipts = _refresh(svcs, op)
    _restart(svcs, lay, 2)
    ask = node_pb2.GetPendingEpochRequest(key_id=key.key_id, session_id=sid)
    infos = {i: svcs[i].GetPendingEpoch(ask, None) for i in (1, 2, 3)}
    assert all(x.pending and x.receipt and x.active_epoch == 0 for x in infos.values())
    reported = {i: tuple(bytes(s) for s in x.public_shares) for i, x in infos.items()}
    assert len(set(reported.values())) == 1
    ids = {e.index: e.identity_key for e in svcs[1].roster_state.current().entries}  # type: ignore[union-attr]
    cert = verify_commit_certificate(
        [bytes(infos[i].receipt) for i in (1, 2, 3)], governance_root=svcs[1].gov.governance_root, key_id=key.key_id,
        session_id=sid, identities=ids,
    )
    shares = new_epoch_public_shares(SignedKeyOperation.from_bytes(op).operation, cert.state_digest, reported)
    _commit(svcs, key.key_id, sid, receipts, (1,))
    _restart(svcs, lay, 3)
    _commit(svcs, key.key_id, sid, receipts, (1, 2, 3))  # node 1 again: idempotent
    for i in (1, 2, 3):
        ks = _share(svcs[i], key.key_id)
        assert ks.epoch == 1 and ks.public_shares == shares
        assert svcs[i].store.count_fresh_nonces(key.key_id) == 0
    req = schnorr_request(lay, key, old, epoch=0)
    with pytest.raises(RpcError) as e:
        svcs[2].SignSchnorr(for_signer(req, 2), None)
    assert e.value.code == Code.FAILED_PRECONDITION
    sign_at(lay, svcs, key, _share(svcs[1], key.key_id).public(), (2, 3), (1, 2, 3), 1)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_restored_frost_share_never_signs_before_its_follow_up(
    lay: Layout, svcs: dict[int, NodeService], config: SignedRecoveryConfigChange, officers: list[tuple[bytes, bytes]],
    scheme: str,
) -> None:
    key = frost_dkg(svcs, scheme, T)
    bundle = _bundle(svcs, config, key)
    _wipe(lay, svcs, 3)
    s3 = svcs[3]
    s3.InstallRecoveryConfig(node_pb2.InstallRecoveryConfigRequest(history=[config.to_bytes()]), None)
    order, _follow = _order(lay, svcs[1], key, bundle)
    for i in (1, 2):
        svcs[i].InstallRecoveryOrder(node_pb2.InstallRecoveryOrderRequest(signed_order=order.to_bytes()), None)
    oid = order.order.order_id
    pieces = [officer_deliveries(bundle, officers[k - 1][0], ceremony_id=oid, purpose=PiecePurpose.RESTORE,
                                 targets={3: s3.keys.encryption_public})[3] for k in (1, 2)]
    s3.RestoreShare(node_pb2.RestoreShareRequest(signed_order=order.to_bytes(), bundle=bundle.to_file(), pieces=pieces), None)
    assert s3.store.restored_share(key.key_id) is not None
    # the restored share is complete, but makes no nonce and signs nothing before the follow-up
    with pytest.raises(RpcError) as e:
        s3.MakeNonces(node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=0, count=1), None)
    assert e.value.code == Code.FAILED_PRECONDITION and "restored" in e.value.message, e.value
    others = _nonces(svcs, key, (1,), 0)
    forged = node_pb2.NonceCommitment(nonce_id=os.urandom(32), signer=3, hiding=others[0].hiding, binding=others[0].binding)
    req = schnorr_request(lay, key, [others[0], forged], epoch=0)
    with pytest.raises(RpcError) as e:
        s3.SignSchnorr(for_signer(req, 3), None)
    assert e.value.code in (Code.FAILED_PRECONDITION, Code.NOT_FOUND), e.value  # never INTERNAL
    assert s3.Health(node_pb2.NodeHealthRequest(), None).nonces == 0
    # a drill of the restored share is refused: it is no live share
    with pytest.raises(RpcError) as e:
        s3.AttestEpoch(node_pb2.AttestEpochRequest(key_id=key.key_id, ceremony_id=os.urandom(16)), None)
    assert e.value.code == Code.FAILED_PRECONDITION
