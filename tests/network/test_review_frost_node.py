"""Review of the node's FROST path (issue 16) as a compromised coordinator, driven in process.

The test plays a coordinator that wants a second share out of one nonce (another package,
message, attempt, root, session, key; concurrently; after a restore of an old store copy), a
signature the approvals do not cover (scheme confusion, root substitution), or an INTERNAL error
and raw caller text in the node's logs and audit. A nonce that gave two shares for two packages
reveals the node's secret share (two equations z = d + e*rho + lambda*c*s in d, e, s with the
coordinator choosing rho and c), so the property checked is: every answer from one nonce_id
carries the same share bytes, at most one."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator

import pytest

from governance.approval import SCHEME_BIP340, SCHEME_ECDSA, SCHEME_ED25519
from mpc_node.config import load_node_config
from mpc_node.service import NodeService
from mpc_node.storage import NodeStore, StoreError
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .frost_util import aggregate_verified, for_signer, frost_dkg, make_nonces, schnorr_request
from .presign_util import Code, close, kind, service

SCHEMES = (SCHEME_ED25519, SCHEME_BIP340)


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("frost-review"), 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = {i: service(lay, i) for i in (1, 2, 3)}
    yield out
    for s in out.values():
        close(s)


@pytest.fixture(scope="module")
def keys(svcs: dict[int, NodeService]) -> dict[str, node_pb2.DkgResult]:
    return {s: frost_dkg(svcs, s, 2, label=s.encode()) for s in SCHEMES}


def _package(svcs: dict[int, NodeService], key: node_pb2.DkgResult, signers: tuple[int, ...]) -> list[node_pb2.NonceCommitment]:
    got = make_nonces(svcs, key, signers)
    return [got[i][0] for i in signers]


def _try(svc: NodeService, req: node_pb2.SignSchnorrRequest) -> bytes | RpcError:
    try:
        return bytes(svc.SignSchnorr(req, None).share)
    except RpcError as e:
        return e


def _shares(answers: list[bytes | RpcError]) -> set[bytes]:
    return {a for a in answers if isinstance(a, bytes)}


def _replace(c: node_pb2.NonceCommitment, **kw: object) -> node_pb2.NonceCommitment:
    out = node_pb2.NonceCommitment()
    out.CopyFrom(c)
    for k, v in kw.items():
        setattr(out, k, v)
    return out


@pytest.mark.parametrize("scheme", SCHEMES)
def test_one_nonce_never_gives_two_shares_whatever_the_coordinator_changes(lay, svcs, keys, scheme) -> None:
    key, other = keys[scheme], keys[SCHEME_BIP340 if scheme == SCHEME_ED25519 else SCHEME_ED25519]
    c1, c2 = _package(svcs, key, (1, 2))
    spare2 = make_nonces(svcs, key, (2,))[2][0]
    c3 = make_nonces(svcs, key, (3,))[3][0]
    first = for_signer(schnorr_request(lay, key, [c1, c2]), 1)
    answers = [_try(svcs[1], first)]
    assert isinstance(answers[0], bytes)

    def same_request(**kw: object) -> node_pb2.SignSchnorrRequest:
        r = node_pb2.SignSchnorrRequest()
        r.CopyFrom(first)
        for k, v in kw.items():
            if k == "commitments":
                del r.commitments[:]
                r.commitments.extend(v)  # type: ignore[arg-type]
            else:
                setattr(r, k, v)
        return r

    root = os.urandom(32) if scheme == SCHEME_BIP340 else b""
    variants = [
        same_request(commitments=[c1, spare2]),  # the other signer's commitment changed
        same_request(commitments=[c1, c3]),  # another signer set (1, 3)
        same_request(attempt=2),
        same_request(attempt=2, commitments=[c1, spare2]),
        same_request(session_id=os.urandom(32)),
        same_request(commitments=[c1, _replace(c2, hiding=c2.binding, binding=c2.hiding)]),
        for_signer(schnorr_request(lay, key, [c1, c2]), 1),  # another approved request (another message)
        for_signer(schnorr_request(lay, key, [c1, spare2], request_id=first.request_id, attempt=1), 1),  # same id, new approvals
        for_signer(schnorr_request(lay, key, [c1, c2], root=root), 1),
        same_request(key_id=other.key_id),  # the nonce presented for another key
    ]
    for v in variants:
        answers.append(_try(svcs[1], v))
    assert len(_shares(answers)) == 1, [a if isinstance(a, bytes) else (a.code, a.message) for a in answers]
    for a in answers[1:]:
        assert isinstance(a, bytes) or a.code != Code.INTERNAL


def test_concurrent_packages_on_one_nonce_in_one_attempt_give_one_share(lay, svcs, keys) -> None:
    key = keys[SCHEME_ED25519]
    c1, c2 = _package(svcs, key, (1, 2))
    others = [c2, *make_nonces(svcs, key, (2,), count=3)[2]]
    base = schnorr_request(lay, key, [c1, c2])
    reqs = []
    for o in others:
        r = for_signer(base, 1)
        del r.commitments[:]
        r.commitments.extend([c1, o])
        reqs.append(r)
    out: list[bytes | RpcError] = [b""] * len(reqs)
    start = threading.Barrier(len(reqs))

    def run(k: int) -> None:
        start.wait()
        out[k] = _try(svcs[1], reqs[k])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(reqs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(_shares(out)) == 1, out
    assert all(isinstance(o, bytes) or o.code == Code.FAILED_PRECONDITION for o in out), out


def _snapshot(src: str, dst: str) -> None:
    """A consistent copy of a live SQLite store (what a VM snapshot or a backup tool keeps)."""
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()


def test_a_restored_store_copy_never_revives_a_nonce_even_if_the_start_purge_fails(tmp_path, monkeypatch) -> None:
    """An old copy of the store (fresh nonces in it) restored after a nonce was used; the node
    starts while the store cannot be written (another process holds the write lock, a full
    disk), so the purge at start fails. Later, writable again, the revived nonce must not sign
    a second package."""
    lay = prepare(tmp_path / "c", 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)
    svcs = {i: service(lay, i) for i in (1, 2, 3)}
    try:
        key = frost_dkg(svcs, SCHEME_ED25519, 2)
        c1, c2 = _package(svcs, key, (1, 2))
        store = str(load_node_config(lay.node_config(1)).store)
        _snapshot(store, str(tmp_path / "old.db"))
        req = schnorr_request(lay, key, [c1, c2])
        first = svcs[1].SignSchnorr(for_signer(req, 1), None).share
        close(svcs[1])
        for suffix in ("-wal", "-shm"):
            if os.path.exists(store + suffix):
                os.remove(store + suffix)
        shutil.copyfile(tmp_path / "old.db", store)

        def locked(self: NodeStore, **kw: object) -> int:  # the start purge (and its audit entry) cannot write
            raise StoreError("database is locked")

        c3 = make_nonces(svcs, key, (2,))[2][0]
        second = for_signer(schnorr_request(lay, key, [c1, c3]), 1)
        with monkeypatch.context() as m:
            m.setattr(NodeStore, "delete_all_fresh_nonces", locked)
            svcs[1] = service(lay, 1)
            assert svcs[1].store.frost_nonce(c1.nonce_id) is not None  # the copy brought the fresh nonce back
            while_locked = _try(svcs[1], second)  # still cannot purge: refuses, never signs
            assert isinstance(while_locked, RpcError) and while_locked.code == Code.UNAVAILABLE, while_locked
            with pytest.raises(RpcError) as ei:
                svcs[1].MakeNonces(node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=0, count=1), None)
            assert ei.value.code == Code.UNAVAILABLE
        got = _try(svcs[1], second)
        assert not isinstance(got, bytes) or got == first, "a restored nonce signed a second package"
        assert isinstance(got, RpcError) and got.code != Code.INTERNAL
        # once it can write, the start purge is done before any nonce is used or made
        assert svcs[1].store.frost_nonce(c1.nonce_id) is None
        fresh = _package(svcs, key, (1, 2))
        again = schnorr_request(lay, key, fresh)
        aggregate_verified(svcs[1], key, again, {i: svcs[i].SignSchnorr(for_signer(again, i), None).share for i in (1, 2)})
    finally:
        for s in svcs.values():
            close(s)


def test_scheme_and_root_confusion_is_refused(lay, svcs, keys) -> None:
    ed, tr = keys[SCHEME_ED25519], keys[SCHEME_BIP340]
    # a request approved as ECDSA (v1 encoding) naming the Schnorr key's id: the approvals cover an ECDSA signature only
    for key in (ed, tr):
        pkg = _package(svcs, key, (1, 2))
        v1 = for_signer(schnorr_request(lay, key, pkg, approved_scheme=SCHEME_ECDSA, approved_root=b""), 1)
        e = _try(svcs[1], v1)
        assert isinstance(e, RpcError) and e.code == Code.PERMISSION_DENIED and e.message.startswith("approval_bundle.request.scheme"), e
    # ed25519: the digest itself sent as the message (sign H(m) instead of m): refused
    pkg = _package(svcs, ed, (1, 2))
    m = b"pay 1 SOL"
    d = hashlib.sha256(m).digest()
    as_digest = for_signer(schnorr_request(lay, ed, pkg, message=d, approved_digest=d), 1)
    e = _try(svcs[1], as_digest)
    assert isinstance(e, RpcError) and e.code == Code.PERMISSION_DENIED and e.message.startswith("message: "), e
    # bip340: approvals for the BIP86 key path (no root) used with a script-tree root, and the reverse
    for approved, sent in ((b"", os.urandom(32)), (os.urandom(32), b""), (os.urandom(32), os.urandom(32))):
        pkg = _package(svcs, tr, (1, 2))
        r = for_signer(schnorr_request(lay, tr, pkg, root=sent, approved_root=approved), 1)
        e = _try(svcs[1], r)
        assert isinstance(e, RpcError) and e.code == Code.PERMISSION_DENIED and e.message.startswith("taproot_merkle_root"), e
    # approvals for one FROST key presented with the other key's id (same nonce owner)
    pkg = _package(svcs, tr, (1, 2))
    r = for_signer(schnorr_request(lay, ed, pkg), 1)
    e = _try(svcs[1], r)
    assert isinstance(e, RpcError) and e.code == Code.FAILED_PRECONDITION and kind(e) == "nonce-mismatch", e


HOSTILE = "evil\x1b[2J\n\rinjected\u202e\x00"


def test_hostile_and_out_of_range_fields_get_field_errors_never_internal_or_raw_text(lay, svcs, keys, caplog) -> None:
    key = keys[SCHEME_BIP340]
    pkg = _package(svcs, key, (1, 2))
    good = for_signer(schnorr_request(lay, key, pkg), 1)
    big = 2**32 - 1

    def variant(**kw: object) -> node_pb2.SignSchnorrRequest:
        r = node_pb2.SignSchnorrRequest()
        r.CopyFrom(good)
        for k, v in kw.items():
            if k in ("commitments", "reservation_receipts"):
                del getattr(r, k)[:]
                getattr(r, k).extend(v)
            else:
                setattr(r, k, v)
        return r

    c1, c2 = pkg
    calls = [
        ("SignSchnorr", variant(request_id=HOSTILE)),
        ("SignSchnorr", variant(epoch=big)),
        ("SignSchnorr", variant(attempt=2**32 - 1)),
        ("SignSchnorr", variant(commitments=[c1, _replace(c2, signer=2**32 - 1)])),
        ("SignSchnorr", variant(commitments=[_replace(c1, signer=0), c2])),
        ("SignSchnorr", variant(commitments=[c1, _replace(c2, hiding=b"\x02" + b"\x00" * 32)])),
        ("SignSchnorr", variant(commitments=[c1, _replace(c2, binding=b"\x05" + bytes(c2.binding)[1:])])),
        ("SignSchnorr", variant(commitments=[c1, _replace(c2, nonce_id=b"")])),
        ("SignSchnorr", variant(commitments=[c1, c2, _replace(c2, signer=3)])),
        ("SignSchnorr", variant(key_id=os.urandom(32))),
        ("SignSchnorr", variant(approval_bundle=HOSTILE.encode())),
        ("SignSchnorr", variant(policy_attestation=HOSTILE.encode())),
        ("MakeNonces", node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=big, count=1)),
        ("MakeNonces", node_pb2.MakeNoncesRequest(key_id=os.urandom(32), epoch=0, count=1)),
        ("MakeNonces", node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=0, count=2**32 - 1)),
        ("MakeNonces", node_pb2.MakeNoncesRequest(key_id=b"", epoch=0, count=1)),
        ("DiscardNonces", node_pb2.DiscardNoncesRequest(key_id=key.key_id, reason=HOSTILE)),
        ("DiscardNonces", node_pb2.DiscardNoncesRequest(key_id=key.key_id, nonce_ids=[b"x"], reason="t")),
    ]
    before = len(svcs[1].audit.entries())
    with caplog.at_level(logging.DEBUG):
        for k, (name, req) in enumerate(calls):
            try:
                getattr(svcs[1], name)(req, None)
            except RpcError as err:
                e = err
            else:
                raise AssertionError(f"call {k} ({name}) was not refused")
            assert e.code not in (Code.INTERNAL, Code.UNKNOWN), (name, e.code, e.message)
            assert ":" in e.message and " " not in e.message.split(":", 1)[0], (name, e.message)  # names a field
            for bad in ("\x1b", "\n", "\r", "\u202e", "\x00"):
                assert bad not in e.message, (name, e.message)
    for entry in svcs[1].audit.entries()[before:]:
        text = repr(entry.details) + entry.request_id + entry.actor
        assert "\x1b" not in text and "\u202e" not in text and "\n" not in text, entry
    for rec in caplog.records:
        assert "\x1b" not in rec.getMessage() and "\u202e" not in rec.getMessage(), rec.getMessage()
    # nothing consumed: the package still signs
    resps = {i: svcs[i].SignSchnorr(for_signer(good, i), None).share for i in (1, 2)}
    aggregate_verified(svcs[1], key, good, resps)


def test_nonce_caps_hold_and_a_discard_frees_only_fresh_ones(lay, svcs, keys) -> None:
    key = keys[SCHEME_ED25519]
    n3 = svcs[3]
    n3.DiscardNonces(node_pb2.DiscardNoncesRequest(key_id=key.key_id, reason="t"), None)
    cap = n3.cfg.max_nonces_per_key
    made = 0
    with pytest.raises(RpcError) as ei:
        for _ in range(cap // 64 + 2):
            made += len(n3.MakeNonces(node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=0, count=64), None).commitments)
    assert ei.value.code == Code.RESOURCE_EXHAUSTED and ei.value.message.startswith("count: ")
    assert made <= cap and n3.store.count_fresh_nonces(key.key_id) == made
    n3.DiscardNonces(node_pb2.DiscardNoncesRequest(key_id=key.key_id, reason="t"), None)
    assert n3.store.count_fresh_nonces(key.key_id) == 0


def test_over_grpc_only_the_coordinator_may_call_the_frost_rpcs_and_bad_input_is_never_internal(lay, svcs, keys) -> None:
    """A real gRPC server of node 1 (mTLS): as the coordinator a whole FROST share over the wire
    and field errors for bad input; as another node, an admin or a requester: PERMISSION_DENIED
    before anything is read (a corrupted node cannot make, use or discard another node's nonces)."""
    import grpc

    from mpc_node.main import build_server
    from mpcnet.client.identities import identity_dir
    from mpcnet.common.pki import CertPaths, channel_credentials
    from mpcnet.wire.mpc.v1 import node_pb2_grpc

    svc = svcs[1]
    key = keys[SCHEME_ED25519]
    server, port = build_server(svc.cfg, svc)
    server.start()
    try:
        endpoint = f"{svc.cfg.listen.rsplit(':', 1)[0]}:{port}"

        def channel(who: str) -> grpc.Channel:
            d = identity_dir(lay.dir, who)
            cert = CertPaths(d / f"{who}.pem", d / f"{who}.key") if d.is_dir() else lay.cert(who)
            return grpc.secure_channel(endpoint, channel_credentials(cert, lay.ca.cert))

        pkg = [make_nonces(svcs, key, (2,))[2][0]]
        with channel("coordinator") as ch:
            stub = node_pb2_grpc.NodeStub(ch)
            mine = stub.MakeNonces(node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=0, count=1), timeout=10).commitments[0]
            req = schnorr_request(lay, key, [mine, *pkg])
            got = stub.SignSchnorr(for_signer(req, 1), timeout=10)
            assert not got.replayed and len(got.share) == 32
            aggregate_verified(svc, key, req, {1: got.share, 2: svcs[2].SignSchnorr(for_signer(req, 2), None).share})
            bad = for_signer(req, 1)
            bad.attempt = 2  # the same nonce for another attempt
            with pytest.raises(grpc.RpcError) as ei:
                stub.SignSchnorr(bad, timeout=10)
            assert ei.value.code() == Code.FAILED_PRECONDITION and ei.value.details().startswith("nonce_id: ")
            assert dict(ei.value.trailing_metadata() or ()).get("mpc-governance") == "nonce-used"
            for raw in (b"\xff\xff", b"\x0a\x05abc"):  # undecodable / truncated protobuf
                for m in ("SignSchnorr", "MakeNonces", "DiscardNonces"):
                    with pytest.raises(grpc.RpcError) as ei:
                        ch.unary_unary(f"/mpc.v1.Node/{m}")(raw, timeout=10)  # type: ignore[arg-type]
                    assert ei.value.code() not in (Code.INTERNAL, Code.UNKNOWN), (m, ei.value.details())
        for who in ("node-2", "admin1", "requester1"):
            with channel(who) as ch:
                stub = node_pb2_grpc.NodeStub(ch)
                for call, msg in (
                    (stub.MakeNonces, node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=0, count=1)),
                    (stub.SignSchnorr, for_signer(req, 1)),
                    (stub.DiscardNonces, node_pb2.DiscardNoncesRequest(key_id=key.key_id, reason="x")),
                ):
                    with pytest.raises(grpc.RpcError) as ei:
                        call(msg, timeout=10)
                    assert ei.value.code() == Code.PERMISSION_DENIED, (who, ei.value.details())
    finally:
        server.stop(None)


def test_a_banned_co_signer_is_refused_before_the_nonce_is_touched(lay, svcs) -> None:
    """Node 1 banned node 2 for a key (an identifiable abort): a package naming node 2 is
    refused (PERMISSION_DENIED ``mpc-banned``) and leaves node 1's nonce fresh; the same nonce
    still signs with node 3."""
    key = frost_dkg(svcs, SCHEME_BIP340, 2, label=b"ban")
    with svcs[1].bans.hold(key.key_id, [2]):
        svcs[1].bans.record(key.key_id, 2, "test: a bad share")
    c1, c2 = _package(svcs, key, (1, 2))
    c3 = make_nonces(svcs, key, (3,))[3][0]
    e = _try(svcs[1], for_signer(schnorr_request(lay, key, [c1, c2]), 1))
    assert isinstance(e, RpcError) and e.code == Code.PERMISSION_DENIED and kind(e) == "mpc-banned", e
    assert e.message.startswith("commitments.signer: ")
    info, secret = svcs[1].store.frost_nonce(c1.nonce_id)
    assert not info.used and secret is not None
    req = schnorr_request(lay, key, [c1, c3])
    aggregate_verified(svcs[1], key, req, {i: svcs[i].SignSchnorr(for_signer(req, i), None).share for i in (1, 3)})


def test_the_rate_limit_holds_on_the_frost_path_and_a_refusal_keeps_the_nonce(lay, svcs) -> None:
    """The key's policy rate limit counts FROST signatures like DKLs ones: at the limit a new
    request is refused (``rate-limited``) before the nonce is consumed; the request's own later
    attempts do not count again."""
    import time

    key = frost_dkg(svcs, SCHEME_ED25519, 2, label=b"rate")
    got = svcs[1].gov.policy_for(key.key_id)
    assert got is not None
    limit = got[1].rate_limit
    now = int(time.time() * 1000)
    conn = sqlite3.connect(load_node_config(lay.node_config(1)).store)
    with conn:
        conn.executemany(
            "INSERT INTO requests (request_id, key_id, digest, served_at, served_ms) VALUES (?, ?, ?, ?, ?)",
            [(f"filled-{i}", key.key_id, b"\0" * 32, now // 1000, now) for i in range(limit.max_signatures - 1)],
        )
    conn.close()
    req = schnorr_request(lay, key, _package(svcs, key, (1, 2)))
    aggregate_verified(svcs[1], key, req, {i: svcs[i].SignSchnorr(for_signer(req, i), None).share for i in (1, 2)})  # the last slot
    # the same request's attempt 2 (a retry with fresh nonces) is not a new signature for the limit
    again = for_signer(schnorr_request(lay, key, _package(svcs, key, (1, 3)), attempt=2), 1)
    again.request_id, again.approval_bundle, again.message = req.request_id, req.approval_bundle, req.message
    assert isinstance(_try(svcs[1], again), bytes)
    c1, c2 = _package(svcs, key, (1, 2))
    over = for_signer(schnorr_request(lay, key, [c1, c2]), 1)
    e = _try(svcs[1], over)
    assert isinstance(e, RpcError) and kind(e) == "rate-limited" and e.message.startswith("rate_limit:"), e
    info, secret = svcs[1].store.frost_nonce(c1.nonce_id)
    assert not info.used and secret is not None


def test_roster_index_and_share_index_differ_after_a_revocation(tmp_path) -> None:
    """Node 2 of four is revoked, then a FROST key is made by nodes 1, 3, 4: roster index 3 is
    share index 2. Signers are named by roster index on the wire and mapped to share indices by
    committee position; a package naming the revoked node, or share indices in place of roster
    indices, is refused naming commitments.signer."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from crypto_core.frost.signing import SigningCommitment, SigningPackage, aggregate
    from governance.roster import revoke_node
    from tests.integration.rostertools import history, signed_next

    lay4 = prepare(tmp_path, 4, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)
    all4 = {i: service(lay4, i) for i in (1, 2, 3, 4)}
    try:
        r1 = history(lay4)[0].change.new_roster
        change = node_pb2.InstallRosterChangeRequest(signed_change=signed_next(lay4, r1, revoke_node(r1, 2)).to_bytes())
        for i in (1, 3, 4):
            assert all4[i].InstallRosterChange(change, None).installed
        svcs = {i: all4[i] for i in (1, 3, 4)}
        key = frost_dkg(svcs, SCHEME_ED25519, 2, label=b"committee")
        assert svcs[3]._any_key(key.key_id).index == 2 and svcs[4]._any_key(key.key_id).index == 3
        c3, c4 = _package(svcs, key, (3, 4))
        req = schnorr_request(lay4, key, [c3, c4])
        shares = {i: svcs[i].SignSchnorr(for_signer(req, i), None).share for i in (3, 4)}
        public = svcs[3]._any_key(key.key_id).public()
        package = SigningPackage(key.scheme, bytes(req.message), (
            SigningCommitment(2, bytes(c3.hiding), bytes(c3.binding)), SigningCommitment(3, bytes(c4.hiding), bytes(c4.binding))))
        sig = aggregate(public, package, {2: shares[3], 3: shares[4]})
        Ed25519PublicKey.from_public_bytes(bytes(key.public_key)).verify(sig, bytes(req.message))
        # share indices where roster indices belong: 2 is the revoked node
        d1, d3 = _package(svcs, key, (1, 3))
        as_share_index = for_signer(schnorr_request(lay4, key, [d1, _replace(d3, signer=2)]), 1)
        e = _try(svcs[1], as_share_index)
        assert isinstance(e, RpcError) and e.code == Code.INVALID_ARGUMENT and e.message.startswith("commitments.signer"), e
        info, secret = svcs[1].store.frost_nonce(d1.nonce_id)
        assert not info.used and secret is not None
    finally:
        for s in all4.values():
            close(s)


def test_a_replay_answers_the_stored_share_only_for_the_same_package(lay, svcs, keys) -> None:
    """(request, attempt, nonce) already served with package P1, asked again with a package P2
    (the coordinator's database restored from an older copy re-assigns the nonce with other
    co-signers): the node must refuse (``nonce-used``), not answer P1's share, which does not
    verify for P2 and would get this honest node blamed (``frost-bad-share``) by the coordinator."""
    key = keys[SCHEME_ED25519]
    c1, c2 = _package(svcs, key, (1, 2))
    c3 = make_nonces(svcs, key, (3,))[3][0]
    first = for_signer(schnorr_request(lay, key, [c1, c2]), 1)
    share = svcs[1].SignSchnorr(first, None).share
    same = svcs[1].SignSchnorr(first, None)
    assert same.replayed and same.share == share  # the very same package: the stored share
    other = node_pb2.SignSchnorrRequest()
    other.CopyFrom(first)
    del other.commitments[:]
    other.commitments.extend([c1, c3])
    e = _try(svcs[1], other)
    assert isinstance(e, RpcError) and e.code == Code.FAILED_PRECONDITION and kind(e) == "nonce-used", e


def test_a_store_copy_restored_under_the_running_node_never_revives_a_used_nonce(tmp_path) -> None:
    """The store is rolled back to an older copy while the node runs (an online restore, a
    storage snapshot reverted under it): the nonce it has used since is fresh in the file again.
    Only nonces this run of the node made and has not used may sign: refused ``nonce-unknown``."""
    lay = prepare(tmp_path / "c", 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)
    svcs = {i: service(lay, i) for i in (1, 2, 3)}
    try:
        key = frost_dkg(svcs, SCHEME_BIP340, 2)
        c1, c2 = _package(svcs, key, (1, 2))
        store = str(load_node_config(lay.node_config(1)).store)
        _snapshot(store, str(tmp_path / "old.db"))
        first = svcs[1].SignSchnorr(for_signer(schnorr_request(lay, key, [c1, c2]), 1), None).share
        _snapshot(str(tmp_path / "old.db"), store)  # rolled back under the running node
        info, secret = svcs[1].store.frost_nonce(c1.nonce_id)
        assert not info.used and secret is not None  # the file says fresh again
        c3 = make_nonces(svcs, key, (3,))[3][0]
        got = _try(svcs[1], for_signer(schnorr_request(lay, key, [c1, c3]), 1))
        assert not isinstance(got, bytes) or got == first, "a rolled-back nonce signed a second package"
        assert isinstance(got, RpcError) and got.code == Code.FAILED_PRECONDITION and kind(got) == "nonce-unknown", got
        # nonces made after the rollback sign as usual
        req = schnorr_request(lay, key, _package(svcs, key, (1, 2)))
        aggregate_verified(svcs[1], key, req, {i: svcs[i].SignSchnorr(for_signer(req, i), None).share for i in (1, 2)})
    finally:
        for s in svcs.values():
            close(s)


def test_the_made_nonce_ids_are_pruned_to_the_fresh_ones_and_signing_goes_on(lay, svcs, keys, monkeypatch) -> None:
    """A coordinator making and discarding nonces forever cannot grow the node's memory: past
    MADE_PRUNE_AT the remembered ids are cut to the fresh ones; a fresh nonce still signs."""
    import mpc_node.frost_sign as fs

    key = keys[SCHEME_BIP340]
    monkeypatch.setattr(fs, "MADE_PRUNE_AT", 8)
    n3 = svcs[3]
    for _ in range(4):
        make_nonces(svcs, key, (3,), count=4)
        n3.DiscardNonces(node_pb2.DiscardNoncesRequest(key_id=key.key_id, reason="t"), None)
    c1, c3 = _package(svcs, key, (1, 3))
    assert len(n3.nonces._made) <= 8 + 4
    req = schnorr_request(lay, key, [c1, c3])
    aggregate_verified(n3, key, req, {i: svcs[i].SignSchnorr(for_signer(req, i), None).share for i in (1, 3)})


def test_a_reservation_for_a_frost_key_needs_approvals_of_its_scheme(lay, svcs, keys) -> None:
    """ReserveSigning (the receipts SignSchnorr accepts below the reservation quorum) for a
    Schnorr key with approvals of an ECDSA request naming the same key id: refused."""
    key = keys[SCHEME_ED25519]
    pkg = _package(svcs, key, (1, 2))
    v1 = schnorr_request(lay, key, pkg, approved_scheme=SCHEME_ECDSA, approved_root=b"")
    e = None
    try:
        svcs[2].ReserveSigning(node_pb2.ReserveSigningRequest(
            key_id=key.key_id, request_id=v1.request_id, attempt=1, signers=[1, 2], session_id=os.urandom(32),
            approval_bundle=v1.approval_bundle, digest=hashlib.sha256(v1.message).digest()), None)
    except RpcError as err:
        e = err
    assert e is not None and e.code == Code.PERMISSION_DENIED and "scheme" in e.message, e
