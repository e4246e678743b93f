"""Refresh and quorum change of FROST keys on the node (issue 16 item 5), driven in process.

Three :class:`NodeService` instances of a 2-of-3 cluster with a signed roster; the test plays the
coordinator: a FROST keygen (Ed25519 and BIP340), an admin-signed refresh (then a reshare to a
committee of two), the epoch receipts, ``CommitEpoch``, then MakeNonces/SignSchnorr at the new
epoch. Each signature is aggregated against the public shares the nodes reported in
``ReshareResult.public_shares`` (what the coordinator records) and verified under an
independent library (OpenSSL through ``cryptography`` for Ed25519, coincurve x-only for BIP340).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import coincurve
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from crypto_core.frost.keyshare import FrostKeyShare
from crypto_core.frost.public import FrostPublic
from crypto_core.frost.signing import SigningCommitment, SigningPackage, aggregate, signing_key
from governance.approval import SCHEME_BIP340, SCHEME_ED25519
from governance.keyop import EpochReceipt, KeyOperation, KeyOpKind, SignedKeyOperation, sign_key_operation
from mpc_node.keyops import state_digest
from mpc_node.service import NodeService
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .frost_util import for_signer, frost_dkg, schnorr_request
from .keyops_util import close, run, services
from .presign_util import Code

SCHEMES = (SCHEME_ED25519, SCHEME_BIP340)
LABEL = b"frost-keyops"


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("frost-keyops"), 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = services(lay)
    yield out
    close(out)


def _operation(
    lay: Layout, svc: NodeService, key: node_pb2.DkgResult, *, kind: KeyOpKind, old: tuple[int, ...], new: tuple[int, ...],
    old_t: int, new_t: int, old_epoch: int,
) -> bytes:
    op = KeyOperation(
        svc.gov.governance_root, os.urandom(16), kind, key.key_id, bytes(key.public_key), b"", old_epoch, old_t, old, new_t, new, 1,
        "test", scheme=key.scheme,
    )
    sigs = tuple(sign_key_operation(op, a, load_identity(lay.dir, a).signing_key) for a in ("admin1", "admin2"))
    return SignedKeyOperation(op, sigs).to_bytes()


def _reshare(svcs: dict[int, NodeService], op: bytes, dealers: list[int]) -> tuple[bytes, dict[int, Any]]:
    o = SignedKeyOperation.from_bytes(op).operation
    sid = os.urandom(32)
    res = run(svcs, sid, sorted(set(dealers) | set(o.new_committee)),
              reshare=node_pb2.ReshareParams(operation=op, dealers=dealers, key_label=LABEL))
    assert all(not isinstance(r, RpcError) and r.finished for r in res.values()), res
    return sid, res


def _commit(svcs: dict[int, NodeService], key_id: bytes, sid: bytes, res: dict[int, Any], to: Sequence[int]) -> None:
    receipts = [r.reshare_result.receipt for r in res.values() if r.reshare_result.receipt]
    req = node_pb2.CommitEpochRequest(key_id=key_id, session_id=sid, receipts=receipts)
    for i in to:
        svcs[i].CommitEpoch(req, None)


def _reported_public(key: node_pb2.DkgResult, res: dict[int, Any], committee: tuple[int, ...], t: int) -> FrostPublic:
    """The new epoch's public shares as the receivers report them: identical, and bound by the
    receipts' state digest (what the coordinator checks before it records them)."""
    vectors = {tuple(r.reshare_result.public_shares) for i, r in res.items() if i in committee}
    assert len(vectors) == 1
    shares = next(iter(vectors))
    assert all(not r.reshare_result.public_shares for i, r in res.items() if i not in committee)  # retiring dealers report none
    want = state_digest(bytes(key.public_key), b"", t, committee, shares, key.scheme)
    assert all(EpochReceipt.from_bytes(r.reshare_result.receipt).state_digest == want for i, r in res.items() if i in committee)
    public = FrostPublic(key.scheme, t, len(committee), bytes(key.public_key), tuple(bytes(s) for s in shares))
    public.validate()
    return public


def sign_at(
    lay: Layout, svcs: dict[int, NodeService], key: node_pb2.DkgResult, public: FrostPublic, signers: tuple[int, ...],
    committee: tuple[int, ...], epoch: int,
) -> bytes:
    """MakeNonces + SignSchnorr at ``epoch`` by ``signers`` (roster indices), aggregated with the
    share indices (committee positions) and verified independently."""
    commitments = [
        svcs[i].MakeNonces(node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=epoch, count=1), None).commitments[0] for i in signers
    ]
    req = schnorr_request(lay, key, commitments, epoch=epoch)
    shares = {committee.index(i) + 1: svcs[i].SignSchnorr(for_signer(req, i), None).share for i in signers}
    package = SigningPackage(
        key.scheme, bytes(req.message),
        tuple(SigningCommitment(committee.index(c.signer) + 1, bytes(c.hiding), bytes(c.binding)) for c in req.commitments),
    )
    sig = aggregate(public, package, shares)
    if key.scheme == SCHEME_ED25519:
        Ed25519PublicKey.from_public_bytes(bytes(key.public_key)).verify(sig, bytes(req.message))  # raises if invalid
    else:
        assert coincurve.PublicKeyXOnly(signing_key(key.scheme, bytes(key.public_key))).verify(sig, bytes(req.message))
    return sig


def _share(svc: NodeService, key_id: bytes) -> FrostKeyShare | None:
    raw = svc.store.get_key_share(key_id)
    return None if not raw else FrostKeyShare.from_bytes(raw)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_refresh_then_reshare_then_sign_at_each_new_epoch(lay: Layout, svcs: dict[int, NodeService], scheme: str) -> None:
    key = frost_dkg(svcs, scheme, 2, LABEL)
    before = {i: _share(s, key.key_id) for i, s in svcs.items()}
    old_nonces = {i: s.MakeNonces(node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=0, count=2), None) for i, s in svcs.items()}
    assert all(s.store.count_fresh_nonces(key.key_id) == 2 for s in svcs.values())

    # refresh: the whole committee deals; every share and public share changes, the key does not
    op = _operation(lay, svcs[1], key, kind=KeyOpKind.REFRESH, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=2, old_epoch=0)
    sid, res = _reshare(svcs, op, [1, 2, 3])
    public = _reported_public(key, res, (1, 2, 3), 2)
    assert public.public_shares != tuple(before[1].public_shares)  # type: ignore[union-attr]
    _commit(svcs, key.key_id, sid, res, [1, 2, 3])
    for i, s in svcs.items():
        new, old = _share(s, key.key_id), before[i]
        assert new is not None and old is not None and new.epoch == 1 and new.scheme == scheme
        assert new.secret_share != old.secret_share and new.public_key == old.public_key and new.public_shares == public.public_shares
        assert s.store.count_fresh_nonces(key.key_id) == 0  # the old epoch's nonces are gone with it
    # an old-epoch nonce can no longer sign: unknown (deleted), and epoch 0 is refused
    stale = schnorr_request(lay, key, [old_nonces[1].commitments[0], old_nonces[2].commitments[0]], epoch=0)
    with pytest.raises(RpcError) as ei:
        svcs[1].SignSchnorr(for_signer(stale, 1), None)
    assert ei.value.code == Code.FAILED_PRECONDITION
    with pytest.raises(RpcError) as ei:
        svcs[1].MakeNonces(node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=0, count=1), None)
    assert ei.value.code == Code.FAILED_PRECONDITION
    sign_at(lay, svcs, key, public, (1, 3), (1, 2, 3), 1)

    # quorum change 2-of-3 -> 2-of-2 on nodes 2 and 3 (node 1 deals, then retires); dealers 1 and 2
    op = _operation(lay, svcs[1], key, kind=KeyOpKind.RESHARE, old=(1, 2, 3), new=(2, 3), old_t=2, new_t=2, old_epoch=1)
    sid, res = _reshare(svcs, op, [1, 2])
    assert res[1].reshare_result.retired and not res[1].reshare_result.public_shares
    public2 = _reported_public(key, res, (2, 3), 2)
    _commit(svcs, key.key_id, sid, res, [1, 2, 3])
    assert not svcs[1].store.get_key_share(key.key_id)  # the retired dealer erased its share
    for i in (2, 3):
        new = _share(svcs[i], key.key_id)
        assert new is not None and (new.epoch, new.parties, new.index) == (2, 2, i - 1)
    sign_at(lay, svcs, key, public2, (2, 3), (2, 3), 2)


def test_a_frost_operation_must_name_the_keys_scheme(lay: Layout, svcs: dict[int, NodeService]) -> None:
    """An ECDSA-encoded operation over a FROST key's public key names another key (its id is not
    that key's); a FROST operation whose scheme differs from the held share's is refused naming
    the scheme."""
    ed = frost_dkg(svcs, SCHEME_ED25519, 2, LABEL)
    bip = frost_dkg(svcs, SCHEME_BIP340, 2, LABEL)
    # the bip340 key's public key under the ed25519 scheme's length rules: refused by governance
    with pytest.raises(Exception) as ge:
        KeyOperation(svcs[1].gov.governance_root, os.urandom(16), KeyOpKind.REFRESH, bip.key_id, bytes(bip.public_key), b"", 0, 2,
                     (1, 2, 3), 2, (1, 2, 3), 1, "", scheme=SCHEME_ED25519)
    assert "public_key" in str(ge.value)
    # a node refuses an operation whose key id is not the id of (scheme, public key)
    wrong = node_pb2.DkgResult()
    wrong.CopyFrom(ed)
    wrong.key_id = bip.key_id
    op = _operation(lay, svcs[1], wrong, kind=KeyOpKind.REFRESH, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=2, old_epoch=0)
    with pytest.raises(RpcError) as ei:
        svcs[1].StartSession(node_pb2.StartSessionRequest(session_id=os.urandom(32), reshare=node_pb2.ReshareParams(
            operation=op, dealers=[1, 2, 3], key_label=LABEL)), None)
    assert ei.value.code == Code.INVALID_ARGUMENT and ei.value.message.startswith("reshare.operation.key_id:"), ei.value.message


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_member_without_the_key_joins_from_the_operation_and_stores_its_scheme(
    lay: Layout, svcs: dict[int, NodeService], scheme: str,
) -> None:
    """Node 3 lost its store (a wiped disk): it holds no record of the key, takes part as a
    receiver only, learns the key (scheme, public key) from the authorized operation, and after
    the commit its new key row has the key's scheme and it signs at epoch 1."""
    key = frost_dkg(svcs, scheme, 2, LABEL)
    svcs[3].store.close()
    svcs[3].audit.close()
    store = Path(svcs[3].cfg.store)
    for f in store.parent.glob(store.name + "*"):
        f.unlink()
    svcs[3] = services(lay, only=3)[3]
    assert svcs[3].store.key_epoch(key.key_id) is None
    op = _operation(lay, svcs[1], key, kind=KeyOpKind.RESHARE, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=3, old_epoch=0)
    sid, res = _reshare(svcs, op, [1, 2])  # node 3 holds nothing to deal
    public = _reported_public(key, res, (1, 2, 3), 3)
    _commit(svcs, key.key_id, sid, res, [1, 2, 3])
    listed = {k.key_id: k for k in svcs[3].ListKeys(node_pb2.NodeListKeysRequest(), None).keys}
    assert listed[key.key_id].scheme == scheme and listed[key.key_id].public_key == key.public_key and listed[key.key_id].epoch == 1
    sign_at(lay, svcs, key, public, (1, 2, 3), (1, 2, 3), 1)
