"""FROST keys on the node (issue 16, mpc_node/frost_sign.py, mpc_node/nonce_store.py), driven in process.

NodeService instances of a 2-of-3 cluster (and a 3-of-5 one) run FROST keygen through
StartSession/Step for both schemes; the test plays the coordinator (and a compromised one):
MakeNonces, SignSchnorr, replays, crashes, refusals. Every signature is aggregated and verified
under an independent library (OpenSSL through ``cryptography`` for Ed25519, coincurve's x-only
BIP340 verification for Taproot)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator

import pytest

from governance.approval import SCHEME_BIP340, SCHEME_ECDSA, SCHEME_ED25519
from governance.keyop import KeyOpKind
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .frost_util import aggregate_verified, for_signer, frost_dkg, make_nonces, schnorr_request
from .keyops_util import operation
from .presign_util import Code, close, kind, restart, run_session, service

SCHEMES = (SCHEME_ED25519, SCHEME_BIP340)


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("frost"), 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = {i: service(lay, i) for i in (1, 2, 3)}
    yield out
    for s in out.values():
        close(s)


@pytest.fixture(scope="module")
def keys(svcs: dict[int, NodeService]) -> dict[str, node_pb2.DkgResult]:
    return {s: frost_dkg(svcs, s, 2) for s in SCHEMES}


def _refused(call: object, *args: object) -> RpcError:
    with pytest.raises(RpcError) as e:
        call(*args, None)  # type: ignore[operator]
    return e.value


def _package(svcs: dict[int, NodeService], key: node_pb2.DkgResult, signers: tuple[int, ...]) -> list[node_pb2.NonceCommitment]:
    got = make_nonces(svcs, key, signers)
    return [got[i][0] for i in signers]


def _sign(svcs, lay, key, signers=(1, 2), **kw) -> tuple[node_pb2.SignSchnorrRequest, dict[int, node_pb2.SignSchnorrResponse]]:
    req = schnorr_request(lay, key, _package(svcs, key, signers), **kw)
    return req, {i: svcs[i].SignSchnorr(for_signer(req, i), None) for i in signers}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_keygen_then_nonces_and_shares_aggregate_to_a_verifying_signature(lay, svcs, keys, scheme) -> None:
    key = keys[scheme]
    assert key.scheme == scheme and key.chain_code == b"" and len(key.public_key) == (32 if scheme == SCHEME_ED25519 else 33)
    listed = {k.key_id: k for k in svcs[1].ListKeys(node_pb2.NodeListKeysRequest(), None).keys}
    assert listed[key.key_id].scheme == scheme and listed[key.key_id].public_key == key.public_key
    before = svcs[1].Health(node_pb2.NodeHealthRequest(), None).nonces
    got = make_nonces(svcs, key, (1, 3), count=3)
    assert svcs[1].Health(node_pb2.NodeHealthRequest(), None).nonces == before + 3
    assert all(c.signer == i and len(c.nonce_id) == 32 for i, cs in got.items() for c in cs)
    assert len({c.nonce_id for cs in got.values() for c in cs}) == 6
    for root in ((b"", os.urandom(32)) if scheme == SCHEME_BIP340 else (b"",)):
        k = 0 if not root else 1
        req = schnorr_request(lay, key, [got[1][k], got[3][k]], root=root)
        resps = {i: svcs[i].SignSchnorr(for_signer(req, i), None) for i in (1, 3)}
        assert all(not r.replayed and r.signer == i and len(r.share) == 32 for i, r in resps.items())
        aggregate_verified(svcs[1], key, req, {i: r.share for i, r in resps.items()})
        # a replay of the same (request, attempt, nonce) answers the stored share, byte for byte
        again = {i: svcs[i].SignSchnorr(for_signer(req, i), None) for i in (1, 3)}
        assert all(again[i].replayed and again[i].share == resps[i].share for i in (1, 3))
        for i in (1, 3):
            assert svcs[i].store.served_attempts(req.request_id) == [1]
            released = [e for e in svcs[i].audit.entries() if e.request_id == req.request_id and e.action == "sign-share"]
            assert [e.outcome for e in released] == ["released"] and released[0].details["scheme"] == scheme
    n = svcs[1].DiscardNonces(node_pb2.DiscardNoncesRequest(key_id=key.key_id, reason="test"), None).discarded
    assert n >= 1 and svcs[1].store.count_fresh_nonces(key.key_id) == 0


def test_three_of_five_both_schemes(tmp_path) -> None:
    lay5 = prepare(tmp_path, 5, 3, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)
    svcs5 = {i: service(lay5, i) for i in range(1, 6)}
    try:
        for scheme in SCHEMES:
            key = frost_dkg(svcs5, scheme, 3)
            req, resps = _sign(svcs5, lay5, key, signers=(2, 4, 5))  # 3 >= the reservation quorum of 5: self-granted
            aggregate_verified(svcs5[2], key, req, {i: r.share for i, r in resps.items()})
    finally:
        for s in svcs5.values():
            close(s)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_bad_input_is_refused_naming_the_field_and_consumes_nothing(lay, svcs, keys, scheme) -> None:
    key = keys[scheme]
    pkg = _package(svcs, key, (1, 2))
    good = schnorr_request(lay, key, pkg)

    def variant(**kw: object) -> node_pb2.SignSchnorrRequest:
        r = for_signer(good, 1)
        for name, v in kw.items():
            if name == "commitments":
                del r.commitments[:]
                r.commitments.extend(v)  # type: ignore[arg-type]
            else:
                setattr(r, name, v)
        return r

    def refused(req: node_pb2.SignSchnorrRequest) -> RpcError:
        return _refused(svcs[1].SignSchnorr, req)

    c1, c2 = pkg
    other = node_pb2.NonceCommitment()
    other.CopyFrom(c1)
    other.hiding = c2.hiding  # not node 1's stored commitment
    cases = [
        (variant(key_id=b"\x01" * 31), Code.INVALID_ARGUMENT, "key_id: "),
        (variant(nonce_id=b""), Code.INVALID_ARGUMENT, "nonce_id: "),
        (variant(session_id=b"x"), Code.INVALID_ARGUMENT, "session_id: "),
        (variant(request_id="bad id\n"), Code.INVALID_ARGUMENT, "request_id: "),
        (variant(message=b""), Code.INVALID_ARGUMENT, "message: "),
        (variant(message=b"m" * 65537), Code.INVALID_ARGUMENT, "message: "),
        (variant(taproot_merkle_root=b"r" * 31), Code.INVALID_ARGUMENT, "taproot_merkle_root: "),
        (variant(attempt=0), Code.INVALID_ARGUMENT, "attempt: "),
        (variant(attempt=4), Code.INVALID_ARGUMENT, "attempt: "),
        (variant(commitments=[c1, c1]), Code.INVALID_ARGUMENT, "commitments.signer: duplicate"),
        (variant(commitments=[c2, c1]), Code.INVALID_ARGUMENT, "commitments.signer: must be in increasing order"),
        (variant(commitments=[c1]), Code.INVALID_ARGUMENT, "commitments: key needs exactly 2"),
        (variant(nonce_id=os.urandom(32)), Code.FAILED_PRECONDITION, "nonce_id: "),
        (variant(commitments=[other, c2]), Code.FAILED_PRECONDITION, "commitments.signer: this node's"),
        (variant(epoch=1), Code.FAILED_PRECONDITION, "epoch: "),
        (variant(approval_bundle=b""), Code.PERMISSION_DENIED, "approval_bundle: missing"),
        (variant(message=b"another message" if scheme == SCHEME_ED25519 else os.urandom(32)), Code.PERMISSION_DENIED, "message: "),
    ]
    bad_sig = node_pb2.NonceCommitment()
    bad_sig.CopyFrom(c2)
    bad_sig.signer = 9  # not a node of the roster
    cases.append((variant(commitments=[c1, bad_sig]), Code.INVALID_ARGUMENT, "commitments.signer: party 9"))
    ident = node_pb2.NonceCommitment()
    ident.CopyFrom(c2)
    ident.hiding = b"\x01" + b"\0" * 31 if scheme == SCHEME_ED25519 else b"\x02" + b"\xff" * 32  # identity / not on the curve
    cases.append((variant(commitments=[c1, ident]), Code.INVALID_ARGUMENT, "commitments[1].hiding: "))
    if scheme == SCHEME_BIP340:
        cases.append((variant(taproot_merkle_root=os.urandom(32)), Code.PERMISSION_DENIED, "taproot_merkle_root: "))
        cases.append((variant(message=b"m" * 33), Code.INVALID_ARGUMENT, "message: "))
    else:
        cases.append((variant(taproot_merkle_root=os.urandom(32)), Code.INVALID_ARGUMENT, "taproot_merkle_root: "))
    for req, code, prefix in cases:
        e = refused(req)
        assert (e.code, e.message[: len(prefix)]) == (code, prefix), (prefix, e.code, e.message)
    assert kind(refused(variant(nonce_id=os.urandom(32)))) == "nonce-unknown"
    assert kind(refused(variant(commitments=[other, c2]))) == "nonce-mismatch"
    # the approvals are for another scheme / another root: refused, naming the request's field
    wrong = for_signer(schnorr_request(lay, key, pkg, approved_scheme=SCHEME_BIP340 if scheme == SCHEME_ED25519 else SCHEME_ED25519), 1)
    e = refused(wrong)
    assert e.code == Code.PERMISSION_DENIED and e.message.startswith("approval_bundle.request.scheme: ")
    # nothing was consumed: the good request still signs on both
    resps = {i: svcs[i].SignSchnorr(for_signer(good, i), None) for i in (1, 2)}
    aggregate_verified(svcs[1], key, good, {i: r.share for i, r in resps.items()})
    refusals = [x for x in svcs[1].audit.entries() if x.action == "sign-share" and x.outcome == "refused"]
    assert len(refusals) >= len(cases)


def test_dkls_and_frost_paths_refuse_each_others_keys_and_a_derivation_path(lay, svcs, keys) -> None:
    ed = keys[SCHEME_ED25519]
    ecdsa = run_session(svcs, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=2, parties=3, key_label=b"e"))[1].dkg_result
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=ecdsa.key_id, public_key=ecdsa.public_key), None)
    assert ecdsa.scheme == SCHEME_ECDSA and len(ecdsa.chain_code) == 32
    # FROST RPCs refuse an ECDSA key, naming key_id
    e = _refused(svcs[1].MakeNonces, node_pb2.MakeNoncesRequest(key_id=ecdsa.key_id, epoch=0, count=1))
    assert e.code == Code.FAILED_PRECONDITION and e.message.startswith("key_id: ") and "ecdsa-secp256k1" in e.message
    e = _refused(svcs[1].SignSchnorr, node_pb2.SignSchnorrRequest(
        key_id=ecdsa.key_id, nonce_id=os.urandom(32), session_id=os.urandom(32), request_id="r-0", approval_bundle=b"x",
        message=bytes(32), attempt=1, commitments=[
            node_pb2.NonceCommitment(nonce_id=os.urandom(32), signer=j, hiding=bytes(33), binding=bytes(33)) for j in (1, 2)
        ]))
    assert e.code == Code.FAILED_PRECONDITION and e.message.startswith("key_id: ") and "ecdsa-secp256k1" in e.message
    # DKLs paths refuse a FROST key, naming key_id and the scheme
    e = _refused(svcs[1].StartSession, node_pb2.StartSessionRequest(session_id=os.urandom(32), presign=node_pb2.PresignParams(
        key_id=ed.key_id, signers=[1, 2], count=1)))
    assert e.code == Code.FAILED_PRECONDITION and "key_id: " in e.message and "ed25519" in e.message
    e = _refused(svcs[1].StartSession, node_pb2.StartSessionRequest(session_id=os.urandom(32), sign=node_pb2.SignParams(
        key_id=ed.key_id, signers=[1, 2], digest=bytes(32), request_id="r-1", approval_bundle=b"x")))
    assert e.code == Code.FAILED_PRECONDITION and e.message.startswith("sign.key_id: ") and "ed25519" in e.message
    e = _refused(svcs[1].SignPresigned, node_pb2.SignPresignedRequest(
        presig_id=os.urandom(32), key_id=ed.key_id, signers=[1, 2], digest=bytes(32), request_id="r-2", approval_bundle=b"x", attempt=1))
    assert e.code in (Code.FAILED_PRECONDITION,) and kind(e) == "presig-unknown"  # never reaches the key: no presignature
    # backups and drills of FROST keys are supported (C3: tests/network/test_frost_node_backup.py): the epoch is attested
    assert svcs[1].AttestEpoch(node_pb2.AttestEpochRequest(key_id=ed.key_id, ceremony_id=os.urandom(16)), None).attestation
    bip = keys[SCHEME_BIP340]
    fake = type("K", (), {"key_id": bip.key_id, "public_key": bip.public_key, "chain_code": bytes(32)})()
    op = operation(lay, svcs[1].gov.governance_root, fake, kind=KeyOpKind.REFRESH, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=2)
    e = _refused(svcs[1].StartSession, node_pb2.StartSessionRequest(session_id=os.urandom(32), reshare=node_pb2.ReshareParams(
        operation=op.to_bytes(), dealers=[1, 2, 3], key_label=b"frost")))
    # an ECDSA-encoded operation over a FROST key's public key names another key (C2: a FROST key's
    # refresh/reshare is a KeyOperation v2 carrying its scheme; tests/network/test_frost_keyops_node.py)
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("reshare.operation.key_id: "), e.message
    # an unknown scheme at keygen
    e = _refused(svcs[1].StartSession, node_pb2.StartSessionRequest(session_id=os.urandom(32), dkg=node_pb2.DkgParams(
        threshold=2, parties=3, scheme="rsa")))
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("dkg.scheme: ")
    # a derivation path in a ReserveSigning of a FROST key
    e = _refused(svcs[1].ReserveSigning, node_pb2.ReserveSigningRequest(
        key_id=ed.key_id, request_id="r-3", attempt=1, signers=[1, 2], session_id=os.urandom(32), approval_bundle=b"x",
        digest=bytes(32), derivation_path=[1]))
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("derivation_path: ")


def test_the_attempt_is_granted_to_the_session(lay, svcs, keys) -> None:
    # 2 signers of a 3-node roster are a reservation quorum (2): self-granted; the grant names the session
    key = keys[SCHEME_ED25519]
    sid = os.urandom(32)
    req, _ = _sign(svcs, lay, key, signers=(2, 3), session=sid)
    assert svcs[2].store.reservation(req.request_id, 1).session_id == sid
    # the same request id and attempt in another session (another approved request): attempt-taken
    again = schnorr_request(lay, key, _package(svcs, key, (2, 3)), request_id=req.request_id, session=os.urandom(32))
    e = _refused(svcs[2].SignSchnorr, for_signer(again, 2))
    assert (e.code, kind(e)) == (Code.FAILED_PRECONDITION, "attempt-taken")


def test_a_signer_set_below_the_reservation_quorum_needs_receipts(tmp_path) -> None:
    lay5 = prepare(tmp_path, 5, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)
    svcs5 = {i: service(lay5, i) for i in range(1, 6)}
    try:
        key = frost_dkg(svcs5, SCHEME_ED25519, 2)
        sid = os.urandom(32)
        req = schnorr_request(lay5, key, _package(svcs5, key, (1, 4)), session=sid)
        e = _refused(svcs5[1].SignSchnorr, for_signer(req, 1))
        assert (e.code, kind(e)) == (Code.PERMISSION_DENIED, "unreserved")
        reserve = node_pb2.ReserveSigningRequest(
            key_id=key.key_id, request_id=req.request_id, attempt=1, signers=[1, 4], session_id=sid,
            approval_bundle=req.approval_bundle, digest=hashlib.sha256(req.message).digest(),
        )
        receipts = [svcs5[i].ReserveSigning(reserve, None).receipt for i in (2, 3, 5)]
        req.reservation_receipts.extend(receipts)
        resps = {i: svcs5[i].SignSchnorr(for_signer(req, i), None) for i in (1, 4)}
        aggregate_verified(svcs5[1], key, req, {i: r.share for i, r in resps.items()})
    finally:
        for s in svcs5.values():
            close(s)


def test_a_nonce_is_used_once_even_under_concurrent_requests(lay, svcs, keys) -> None:
    key = keys[SCHEME_BIP340]
    pkg = _package(svcs, key, (1, 2))
    reqs = [for_signer(schnorr_request(lay, key, pkg), 1) for _ in range(2)]
    out: list[object] = [None, None]
    start = threading.Barrier(2)

    def run(k: int) -> None:
        start.wait()
        try:
            out[k] = svcs[1].SignSchnorr(reqs[k], None)
        except RpcError as e:
            out[k] = e

    threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    ok = [o for o in out if isinstance(o, node_pb2.SignSchnorrResponse)]
    bad = [o for o in out if isinstance(o, RpcError)]
    assert len(ok) == 1 and len(bad) == 1 and kind(bad[0]) == "nonce-used", out
    # the loser's request later: still nonce-used (the tombstone keeps the winner's request)
    loser = reqs[out.index(bad[0])]
    assert kind(_refused(svcs[1].SignSchnorr, loser)) == "nonce-used"


class _Crash(Exception):
    """The process dies here (in process: the call never answers)."""


class _CrashAfterConsume:
    """A FaultInjector stand-in: the SignSchnorr consume transaction commits, then the node dies."""

    path = None

    def at(self, point: str) -> None:
        if point == "nonce-consumed":
            raise _Crash(point)

    def check(self, protocol: str, round: int) -> None:
        return None


def test_a_crash_after_the_consume_then_a_retry_replays_never_a_second_share(lay, svcs, keys, monkeypatch) -> None:
    key = keys[SCHEME_ED25519]
    pkg = _package(svcs, key, (1, 2))
    spare = make_nonces(svcs, key, (1,))[1][0]
    req = schnorr_request(lay, key, pkg)
    monkeypatch.setattr(svcs[1], "faults", _CrashAfterConsume())
    with pytest.raises(_Crash):
        svcs[1].SignSchnorr(for_signer(req, 1), None)
    n1 = restart(lay, svcs, 1)  # the store reopened: fresh nonces deleted, the used one's tombstone and share kept
    info, secret = n1.store.frost_nonce(pkg[0].nonce_id)
    assert info.used and secret is None and (info.request_id, info.attempt) == (req.request_id, 1)
    assert n1.store.frost_nonce(spare.nonce_id) is None and n1.store.count_fresh_nonces() == 0
    retry = n1.SignSchnorr(for_signer(req, 1), None)
    assert retry.replayed and n1.SignSchnorr(for_signer(req, 1), None).share == retry.share
    # another approved request, or another attempt, with the same nonce: never a second share
    assert kind(_refused(n1.SignSchnorr, for_signer(schnorr_request(lay, key, pkg), 1))) == "nonce-used"
    later = for_signer(req, 1)
    later.attempt = 2
    assert kind(_refused(n1.SignSchnorr, later)) == "nonce-used"
    second = svcs[2].SignSchnorr(for_signer(req, 2), None)
    aggregate_verified(svcs[2], key, req, {1: retry.share, 2: second.share})
    released = [e for e in n1.audit.entries() if e.request_id == req.request_id and e.action == "sign-share" and e.outcome == "released"]
    assert len(released) == 1  # committed with the consumption, before the crash


def test_fresh_nonces_are_deleted_at_start_and_on_discard(lay, svcs, keys) -> None:
    key = keys[SCHEME_ED25519]
    got = make_nonces(svcs, key, (3,), count=2)[3]
    assert svcs[3].store.count_fresh_nonces(key.key_id) >= 2
    d = svcs[3].DiscardNonces(node_pb2.DiscardNoncesRequest(key_id=key.key_id, nonce_ids=[got[0].nonce_id], reason="t"), None)
    assert d.discarded == 1
    req = schnorr_request(lay, key, [_package(svcs, key, (1,))[0], got[0]])
    assert kind(_refused(svcs[3].SignSchnorr, for_signer(req, 3))) == "nonce-unknown"
    restart(lay, svcs, 3)
    assert svcs[3].store.count_fresh_nonces() == 0
    req = schnorr_request(lay, key, [_package(svcs, key, (1,))[0], got[1]])
    assert kind(_refused(svcs[3].SignSchnorr, for_signer(req, 3))) == "nonce-unknown"
    e = _refused(svcs[3].MakeNonces, node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=0, count=65))
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("count: ")
    e = _refused(svcs[3].MakeNonces, node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=2, count=1))
    assert e.code == Code.FAILED_PRECONDITION and kind(e) == "epoch"
    e = _refused(svcs[3].DiscardNonces, node_pb2.DiscardNoncesRequest(key_id=key.key_id, reason="Bad Reason"))
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("reason: ")
