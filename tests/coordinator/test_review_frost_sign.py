"""Review of the coordinator's FROST signing (coordinator/frost_sign.py) against a corrupted node,
with the real RFC 9591 crypto (fake nodes of test_frost_sign_real hold real DKG shares).

A corrupted signer may answer a share for another package (another message, another request's
share replayed), claim to be another signer, copy an honest node's commitment, or refuse with
a request-level governance kind it made up. Properties: the corrupted node is named (audited
``frost-bad-share``) or left out, an honest node is never blamed, and the request still signs
with an honest subset within MAX_SIGN_ATTEMPTS; the signature verifies under OpenSSL."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from coordinator.frost_sign import FrostDeps, FrostSigning
from mpcnet.wire.mpc.v1 import node_pb2

from .pool_util import refusal
from .test_frost_sign_real import ED, RealFrostNode, _cluster


def _audited(signing: FrostSigning) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    signing.deps = FrostDeps(**{**signing.deps.__dict__, "audit": lambda *a: out.append(a)})
    return out


def _outcomes(signing: FrostSigning, rid: str) -> dict[tuple[int, int], str]:
    return {(r.attempt, r.node): r.outcome for r in signing.db.nonces_of(rid)}


def _signs_with_honest_nodes(signing: FrostSigning, key: Any, rid: str, bad: int) -> tuple[int, ...]:
    msg = b"pay " + rid.encode()
    sig, signers, attempt = signing.sign(rid, key, hashlib.sha256(msg).digest(), msg, b"", b"bundle")
    Ed25519PublicKey.from_public_bytes(key.public_key).verify(sig.schnorr, msg)  # raises if invalid
    assert bad not in signers and attempt <= 3
    blamed = {node for (_, node), o in _outcomes(signing, rid).items() if o in ("bad-share", "failed")}
    assert blamed <= {bad}, _outcomes(signing, rid)  # an honest node is never blamed
    return signers


def test_a_share_for_another_message_names_its_sender_only(tmp_path: Path) -> None:
    signing, key, nodes = _cluster(tmp_path, ED, 2, 3)
    audited = _audited(signing)
    n1 = nodes[1]
    honest = RealFrostNode.SignSchnorr

    def other_message(req: node_pb2.SignSchnorrRequest, **kw: Any) -> node_pb2.SignSchnorrResponse:
        forged = node_pb2.SignSchnorrRequest()
        forged.CopyFrom(req)
        forged.message = b"another message"
        return honest(n1, forged, **kw)

    n1.SignSchnorr = other_message  # type: ignore[method-assign]
    _signs_with_honest_nodes(signing, key, "req-other-msg", 1)
    assert [(a[1], a[4]["node"]) for a in audited] == [("frost-bad-share", 1)]


def test_a_share_replayed_from_another_request_or_claimed_for_another_signer_is_named(tmp_path: Path) -> None:
    signing, key, nodes = _cluster(tmp_path, ED, 2, 3)
    audited = _audited(signing)
    n1 = nodes[1]
    old: list[bytes] = []
    honest = RealFrostNode.SignSchnorr

    def replaying(req: node_pb2.SignSchnorrRequest, **kw: Any) -> node_pb2.SignSchnorrResponse:
        r = honest(n1, req, **kw)
        if old:  # the share of the previous request, for this package
            return node_pb2.SignSchnorrResponse(share=old[0], signer=1)
        old.append(bytes(r.share))
        return r

    n1.SignSchnorr = replaying  # type: ignore[method-assign]
    msg = b"first"
    signing.sign("req-first", key, hashlib.sha256(msg).digest(), msg, b"", b"bundle")
    _signs_with_honest_nodes(signing, key, "req-replayed", 1)
    assert ("frost-bad-share", 1) in [(a[1], a[4]["node"]) for a in audited]

    # claims to answer as signer 2 (whose share it is not): named, never node 2
    signing2, key2, nodes2 = _cluster(tmp_path / "b", ED, 2, 3)
    audited2 = _audited(signing2)
    m1 = nodes2[1]

    def impersonating(req: node_pb2.SignSchnorrRequest, **kw: Any) -> node_pb2.SignSchnorrResponse:
        r = honest(m1, req, **kw)
        return node_pb2.SignSchnorrResponse(share=r.share, signer=2)

    m1.SignSchnorr = impersonating  # type: ignore[method-assign]
    _signs_with_honest_nodes(signing2, key2, "req-imp", 1)
    assert [(a[1], a[4]["node"]) for a in audited2] == [("frost-bad-share", 1)]


def test_a_copied_commitment_blames_only_the_copier(tmp_path: Path) -> None:
    """Node 1 answers MakeNonces with node 2's commitments (its own ids): the package holds node
    2's D, E twice; node 2's share still verifies, node 1 cannot give one."""
    signing, key, nodes = _cluster(tmp_path, ED, 2, 3)
    audited = _audited(signing)
    n1, n2 = nodes[1], nodes[2]
    signing.make_nonces(key, 0, 2, count=4)
    theirs = n2.MakeNonces(node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=0, count=4))

    def copying(req: node_pb2.MakeNoncesRequest, **_: Any) -> node_pb2.MakeNoncesResponse:
        out = [node_pb2.NonceCommitment(nonce_id=bytes(c.nonce_id[:16]) + b"\x01" * 16, signer=1, hiding=c.hiding, binding=c.binding)
               for c in theirs.commitments][: req.count]
        return node_pb2.MakeNoncesResponse(commitments=out, epoch=req.epoch)

    def cannot_sign(req: node_pb2.SignSchnorrRequest, **_: Any) -> node_pb2.SignSchnorrResponse:
        # it holds no nonce behind the copied commitment: its best is some 32 bytes
        return node_pb2.SignSchnorrResponse(share=b"\x07" * 32, signer=1)

    n1.MakeNonces = copying  # type: ignore[method-assign]
    n1.SignSchnorr = cannot_sign  # type: ignore[method-assign]
    _signs_with_honest_nodes(signing, key, "req-copy", 1)
    assert {a[4]["node"] for a in audited if a[1] == "frost-bad-share"} <= {1}


def test_a_corrupted_nodes_made_up_request_level_refusal_does_not_end_the_request(tmp_path: Path) -> None:
    """Node 1 refuses every SignSchnorr with ``mpc-governance: served`` (or ``expired``) while
    its co-signer gives a valid share for the same request: the refusal is node 1's alone, so
    another subset signs (ROAST: one corrupted node must not stop a request)."""
    for kind in ("served", "expired", "rate-limit"):
        signing, key, nodes = _cluster(tmp_path / kind, ED, 2, 3)

        def refusing(req: node_pb2.SignSchnorrRequest, _kind: str = kind, **_: Any) -> node_pb2.SignSchnorrResponse:
            raise refusal(_kind, "approval_bundle")

        nodes[1].SignSchnorr = refusing  # type: ignore[method-assign]
        _signs_with_honest_nodes(signing, key, f"req-{kind}", 1)


def test_a_node_replaying_known_nonce_ids_is_left_out_never_an_internal_error(tmp_path: Path) -> None:
    """Node 1 answers MakeNonces with nonce ids the coordinator already stored (its own earlier
    answer, or another node's ids it saw in a signing package): nothing of that answer is
    stored, the refill pass goes on with the other nodes, and a request needing node 1's nonces
    on demand signs with the others (never a request failed as INTERNAL)."""
    signing, key, nodes = _cluster(tmp_path, ED, 2, 3)
    n1 = nodes[1]
    first = n1.MakeNonces(node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=0, count=2))

    def replaying(req: node_pb2.MakeNoncesRequest, **_: Any) -> node_pb2.MakeNoncesResponse:
        return node_pb2.MakeNoncesResponse(commitments=list(first.commitments)[: req.count], epoch=req.epoch)

    assert signing.make_nonces(key, 0, 1, count=2) == 2  # an honest second batch
    n1.MakeNonces = replaying  # type: ignore[method-assign]
    signing.make_nonces(key, 0, 1, count=2)  # first time these ids: stored (the node chose them)
    assert signing.make_nonces(key, 0, 1, count=2) == 0  # the same ids again: nothing stored, no exception
    assert signing.refill() >= 0  # the pass goes on (node 1 answers known ids again)
    assert signing.db.fresh_nonce_counts(key.key_id, 0).get(2, 0) > 0
    # node 1's fresh commitments used up: the on-demand batch replays known ids; the request still signs
    for rid in ("req-a", "req-b", "req-c", "req-d", "req-e", "req-f", "req-g"):
        msg = rid.encode()
        sig, _, _ = signing.sign(rid, key, hashlib.sha256(msg).digest(), msg, b"", b"bundle")
        Ed25519PublicKey.from_public_bytes(key.public_key).verify(sig.schnorr, msg)


def test_nonces_whose_answers_were_lost_do_not_lock_a_node_out_at_its_cap(tmp_path: Path) -> None:
    """Node 1 stores each batch but its MakeNonces answers are lost (a deadline after its commit,
    a coordinator crash before storing them): its fresh nonces the coordinator never learned
    fill its per-key cap, after which every MakeNonces is RESOURCE_EXHAUSTED. The coordinator
    must free them (DiscardNonces of the key on that node, its own fresh rows of the node
    discarded with them) and get node 1 signing again, rather than lose it for good."""
    from .pool_util import NodeError

    signing, key, nodes = _cluster(tmp_path, ED, 2, 3)
    n1 = nodes[1]
    cap, lost = 20, [3]
    honest_make = RealFrostNode.MakeNonces

    def capped(req: node_pb2.MakeNoncesRequest, **kw: Any) -> node_pb2.MakeNoncesResponse:
        if len(n1.fresh) + req.count > cap:
            raise NodeError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"count: {len(n1.fresh)} fresh nonce(s); the cap is {cap}")
        resp = honest_make(n1, req, **kw)
        if lost[0] > 0:  # committed on the node, the answer never arrives
            lost[0] -= 1
            raise NodeError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
        return resp

    def discard(req: node_pb2.DiscardNoncesRequest, **_: Any) -> node_pb2.DiscardNoncesResponse:
        with n1.lock:  # as the node: no ids named = every fresh nonce of the key
            ids = [bytes(x) for x in req.nonce_ids] or list(n1.fresh)
            return node_pb2.DiscardNoncesResponse(discarded=sum(n1.fresh.pop(x, None) is not None for x in ids))

    n1.MakeNonces = capped  # type: ignore[method-assign]
    n1.DiscardNonces = discard  # type: ignore[method-assign]
    for _ in range(3):
        try:
            signing.make_nonces(key, 0, 1, count=3)
        except grpc.RpcError:
            pass
    assert len(n1.fresh) == 9  # orphans the coordinator never saw
    assert signing.db.fresh_nonce_counts(key.key_id, 0).get(1, 0) == 0
    signing.refill()  # the cap is hit: the coordinator frees the orphans and refills
    assert signing.db.fresh_nonce_counts(key.key_id, 0).get(1, 0) > 0
    msg = b"after the cap"
    sig, signers, _ = signing.sign("req-cap", key, hashlib.sha256(msg).digest(), msg, b"", b"bundle")
    assert 1 in signers
    Ed25519PublicKey.from_public_bytes(key.public_key).verify(sig.schnorr, msg)
