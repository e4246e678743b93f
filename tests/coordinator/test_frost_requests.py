"""Issue 16 on the coordinator's request path: SubmitSignRequest's per-scheme rules (each
refusal INVALID_ARGUMENT naming the field, nothing stored), the governance SigningRequest built
with scheme and Taproot root, the message stored and shown; key scheme checks (CreateKey input
rule, DkgResult by scheme, KeyInfo.scheme); lifecycle refusals for FROST keys; the pools skip
them; a FROST request approved end to end signs through coordinator/frost_sign.py."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from coordinator.db import KeyRecord
from coordinator.inputs import check_request
from coordinator.schemes import check_dkg_key, check_frost_result, check_submission, refuse_frost, scheme_of
from coordinator.service import key_info
from crypto_core.errors import DecodeError
from crypto_core.group import Point
from governance.approval import MAX_MESSAGE, SigningRequest
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import coordinator_pb2

from .signreq_util import Harness

ED = "ed25519"
BIP = "schnorr-secp256k1-bip340"
ED_KEY = hashlib.sha256(b"ed-key").digest()
BIP_KEY = hashlib.sha256(b"bip-key").digest()
MSG = b"solana transfer: 1 SOL"
ED_PUB = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")  # RFC 8032 test 1
SECP_PUB = Point.base_mul(7).encode()


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    harness.ed = KeyRecord(ED_KEY, "ed", ED_PUB, b"", 2, 3, "active", 1, "kg-2", ED)  # type: ignore[attr-defined]
    harness.bip = KeyRecord(BIP_KEY, "bip", SECP_PUB, b"", 2, 3, "active", 1, "kg-3", BIP)  # type: ignore[attr-defined]
    harness.db.add_key(harness.ed)  # type: ignore[attr-defined]
    harness.db.add_key(harness.bip)  # type: ignore[attr-defined]
    yield harness
    harness.close()


def _submit(h: Harness, key_id: bytes, **fields: object) -> coordinator_pb2.SignRequestInfo:
    req = coordinator_pb2.SubmitSignRequestRequest(key_id=key_id, description="d", **fields)  # type: ignore[arg-type]
    check_request(req)  # the service's input rules run first
    keys = {k.key_id: k for k in (h.key, h.ed, h.bip)}  # type: ignore[attr-defined]
    return h.sr.submit(req, "req-1", keys.get)


def _refused(h: Harness, key_id: bytes, field: str, **fields: object) -> None:
    before = len(h.db.list_sign_requests())
    with pytest.raises(RpcError) as e:
        _submit(h, key_id, **fields)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.message.startswith(f"{field}:"), e.value.message
    assert len(h.db.list_sign_requests()) == before  # nothing stored


def test_ed25519_request_carries_message(h: Harness) -> None:
    info = _submit(h, ED_KEY, message=MSG, request_id="req-ed")
    assert info.scheme == ED and info.message == MSG and info.digest == hashlib.sha256(MSG).digest()
    sreq = SigningRequest.from_bytes(info.request)
    assert sreq.scheme == ED and sreq.digest == hashlib.sha256(MSG).digest() and sreq.taproot_root == b""
    assert h.db.get_sign_request("req-ed").message == MSG  # type: ignore[union-attr]
    # the digest may be given too, when it is the message's SHA-256
    assert _submit(h, ED_KEY, message=MSG, digest=hashlib.sha256(MSG).digest(), request_id="req-ed2").message == MSG


def test_ed25519_refusals(h: Harness) -> None:
    _refused(h, ED_KEY, "message")  # no message
    _refused(h, ED_KEY, "digest", message=MSG, digest=b"\x00" * 32)
    _refused(h, ED_KEY, "derivation_path", message=MSG, derivation_path=[1])
    _refused(h, ED_KEY, "taproot_merkle_root", message=MSG, taproot_merkle_root=b"\x01" * 32)
    _refused(h, ED_KEY, "message", message=b"x" * (MAX_MESSAGE + 1))
    _refused(h, ED_KEY, "digest", message=MSG, digest=b"\x00" * 31)


def test_bip340_request_with_and_without_root(h: Harness) -> None:
    d = b"\x33" * 32
    info = _submit(h, BIP_KEY, digest=d, taproot_merkle_root=b"\x44" * 32, request_id="req-tr")
    sreq = SigningRequest.from_bytes(info.request)
    assert (sreq.scheme, sreq.taproot_root, sreq.digest) == (BIP, b"\x44" * 32, d)
    assert info.scheme == BIP and info.taproot_merkle_root == b"\x44" * 32 and info.message == b""
    assert SigningRequest.from_bytes(_submit(h, BIP_KEY, digest=d, request_id="req-86").request).taproot_root == b""


def test_bip340_refusals(h: Harness) -> None:
    _refused(h, BIP_KEY, "digest")
    _refused(h, BIP_KEY, "message", digest=b"\x33" * 32, message=b"m")
    _refused(h, BIP_KEY, "taproot_merkle_root", digest=b"\x33" * 32, taproot_merkle_root=b"\x01" * 31)
    _refused(h, BIP_KEY, "derivation_path", digest=b"\x33" * 32, derivation_path=[0])


def test_ecdsa_rules_unchanged(h: Harness) -> None:
    info = _submit(h, h.key.key_id, digest=b"\x55" * 32, derivation_path=[1, 2], request_id="req-ec")
    assert info.scheme == "ecdsa-secp256k1" and info.message == b"" and info.taproot_merkle_root == b""
    _refused(h, h.key.key_id, "digest")
    _refused(h, h.key.key_id, "message", digest=b"\x55" * 32, message=b"m")
    _refused(h, h.key.key_id, "taproot_merkle_root", digest=b"\x55" * 32, taproot_merkle_root=b"\x01" * 32)


def test_same_request_id_different_root_is_refused(h: Harness) -> None:
    _submit(h, BIP_KEY, digest=b"\x33" * 32, request_id="req-same")
    with pytest.raises(RpcError) as e:
        _submit(h, BIP_KEY, digest=b"\x33" * 32, taproot_merkle_root=b"\x01" * 32, request_id="req-same")
    assert e.value.code == grpc.StatusCode.ALREADY_EXISTS
    assert _submit(h, BIP_KEY, digest=b"\x33" * 32, request_id="req-same").request_id == "req-same"  # idempotent


def test_approved_ed25519_request_reaches_the_signer_with_its_message(h: Harness) -> None:
    seen: dict[str, tuple[str, bytes]] = {}

    def sign(rid: str, k: KeyRecord, digest: bytes, path: tuple[int, ...], bundle: bytes):  # type: ignore[no-untyped-def]
        from mpcnet.wire.mpc.v1 import common_pb2

        rec = h.db.get_sign_request(rid)
        assert rec is not None
        seen[rid] = (k.scheme, rec.message)
        return common_pb2.Signature(schnorr=b"\x09" * 64, public_key=k.public_key), (1, 2), 1

    h.sr.signer = sign
    info = _submit(h, ED_KEY, message=MSG, request_id="req-flow")
    sreq = SigningRequest.from_bytes(info.request)
    h.decide(sreq, "alice")
    h.decide(sreq, "bert")
    done = h.sr.info(h.db.get_sign_request("req-flow"))  # type: ignore[arg-type]
    assert done.state == coordinator_pb2.SIGN_REQUEST_STATE_DONE
    assert done.signature.schnorr == b"\x09" * 64 and done.signature.r == b""
    assert seen["req-flow"] == (ED, MSG)


def test_scheme_input_rule() -> None:
    check_request(coordinator_pb2.CreateKeyRequest(label="k", scheme=ED))
    check_request(coordinator_pb2.CreateKeyRequest(label="k"))
    with pytest.raises(RpcError) as e:
        check_request(coordinator_pb2.CreateKeyRequest(label="k", scheme="rsa"))
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.message.startswith("scheme:")
    assert scheme_of("") == "ecdsa-secp256k1" and scheme_of(BIP) == BIP
    with pytest.raises(RpcError):
        scheme_of("ED25519")


def test_dkg_result_checked_by_scheme() -> None:
    check_dkg_key(ED, ED, ED_PUB, b"")
    check_dkg_key(BIP, BIP, SECP_PUB, b"")
    check_dkg_key("ecdsa-secp256k1", "", SECP_PUB, b"\x01" * 32)
    bad = [
        (ED, BIP, ED_PUB, b"", "dkg_result.scheme"),
        (ED, ED, SECP_PUB, b"", "dkg_result.public_key"),  # 33 bytes for ed25519
        (ED, ED, b"\x01" + b"\x00" * 31, b"", "dkg_result.public_key"),  # small order
        (ED, ED, ED_PUB, b"\x01" * 32, "dkg_result.chain_code"),
        (BIP, BIP, ED_PUB, b"", "dkg_result.public_key"),
        (BIP, BIP, b"\x02" + b"\xff" * 32, b"", "dkg_result.public_key"),  # not on the curve
        ("ecdsa-secp256k1", "", SECP_PUB, b"", "dkg_result.chain_code"),
    ]
    for scheme, got, pk, cc, field in bad:
        with pytest.raises(DecodeError) as e:
            check_dkg_key(scheme, got, pk, cc)
        assert e.value.field == field, (scheme, got, field)

    from crypto_core.frost.local import run_frost_dkg
    from crypto_core.frost.public import frost_key_id

    for scheme in (ED, BIP):
        s = run_frost_dkg(scheme, 2, 3)[0]
        shares = s.public_shares
        check_frost_result(scheme, s.key_id, 2, 3, s.public_key, shares)
        check_frost_result(scheme, s.key_id, 2, 3, s.public_key, ())  # shares not sent (yet): the id alone
        wrong = [
            (frost_key_id(scheme, SECP_PUB if scheme == ED else ED_PUB), 2, 3, shares, "dkg_result.key_id"),
            (s.key_id, 2, 3, (shares[0], shares[2], shares[1]), "dkg_result.public_shares"),
            (s.key_id, 2, 3, shares[:2], "dkg_result.public_shares"),
            (s.key_id, 3, 3, shares, "dkg_result.threshold"),  # a sharing of degree 1 is not a 3-of-3 key
        ]
        for key_id, t, n, sh, field in wrong:
            with pytest.raises(DecodeError) as e:
                check_frost_result(scheme, key_id, t, n, s.public_key, sh)
            assert e.value.field == field, (scheme, field, e.value.field)


def test_key_info_shows_scheme_and_lifecycle_refusals(h: Harness) -> None:
    assert key_info(h.ed).scheme == ED and key_info(h.bip).chain_code == b""  # type: ignore[attr-defined]
    assert key_info(h.key).scheme == "ecdsa-secp256k1"
    assert h.db.get_key(ED_KEY) == h.ed  # type: ignore[attr-defined]
    with pytest.raises(RpcError) as e:
        refuse_frost(ED, ED_KEY, "backup export")
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and e.value.message.startswith("key_id:")
    assert "not yet supported for ed25519 keys" in e.value.message
    refuse_frost("ecdsa-secp256k1", ED_KEY, "backup export")  # no refusal


def test_check_submission_returns_what_approvers_sign() -> None:
    s = check_submission(ED, b"", MSG, b"", ())
    assert (s.digest, s.message, s.taproot_root) == (hashlib.sha256(MSG).digest(), MSG, b"")
    assert dataclasses.astuple(check_submission(BIP, b"\x01" * 32, b"", b"", ())) == (BIP, b"\x01" * 32, b"", b"")


def test_presignature_pools_skip_frost_keys(tmp_path: Path) -> None:
    from .pool_util import cluster

    c = cluster(tmp_path)
    frost = KeyRecord(ED_KEY, "ed", ED_PUB, b"", 2, 3, "active", 1, "kg-2", ED)
    c.db.add_key(frost)
    due = c.pools.due()
    assert due and {k.key_id for k, _, _ in due} == {c.key.key_id}  # the ECDSA key only
    assert c.signing.assignment_at_quorum("req-f", ED_KEY, ()) is None  # no presignature for a FROST request


def test_refresh_reshare_and_backups_take_frost_keys(h: Harness) -> None:
    from coordinator.keyops import KeyOperations

    ops = object.__new__(KeyOperations)
    ops.db = h.db
    assert ops._key(ED_KEY, "signed_operation.operation").scheme == ED  # issue 16 C2: refresh/reshare of FROST keys
    assert ops._key(h.key.key_id, "op").key_id == h.key.key_id  # ECDSA keys as before
    # backups of FROST keys are supported (issue 16 item 5): tests/coordinator/test_frost_backups.py
