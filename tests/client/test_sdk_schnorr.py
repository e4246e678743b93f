"""The SDK with Schnorr keys (issue 16), against an in-memory coordinator (tests/client/schnorr_fake):
keys carry their scheme, requests carry the message / Taproot root, and a finished signature is
returned only when independent libraries (cryptography, coincurve; PyNaCl and btclib here as
second opinions) verify it over what the request signs."""

from __future__ import annotations

import hashlib
from typing import Any

import grpc
import nacl.bindings
import pytest
from ecc.ecc import ssa  # btclib's ecc package (pure Python BIP340)

from mpcnet.client import MpcError
from mpcnet.client.schnorr import SchnorrSignature, message_view, native_forms, signing_key, verify_schnorr
from mpcnet.client.sdk import Key
from mpcnet.common import addresses
from mpcnet.wire.mpc.v1 import common_pb2, coordinator_pb2

from .schnorr_fake import FakeSchnorrCoordinator, requester

ROOT = hashlib.sha256(b"script tree").digest()
DIGEST = hashlib.sha256(b"a taproot sighash").digest()


def _setup(scheme: str) -> tuple[FakeSchnorrCoordinator, Any, Key]:
    fake = FakeSchnorrCoordinator()
    c = requester(fake)
    return fake, c, c.create_key("k", scheme=scheme)


def test_create_key_sends_the_scheme_and_checks_the_answer() -> None:
    fake, c, key = _setup("ed25519")
    assert key.scheme == "ed25519" and len(key.public_key) == 32 and key.chain_code == b""
    assert fake.calls[0][1].scheme == "ed25519"
    ecdsa = c.create_key("e")
    assert ecdsa.scheme == "ecdsa-secp256k1" and fake.calls[-1][1].scheme == ""  # the wire's default
    with pytest.raises(MpcError, match="^[A-Z_]+: scheme: must be one of") as e:
        c.create_key("x", scheme="ed448")
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    # a coordinator answering with a key of another scheme
    fake.evil["CreateKey"] = lambda r: coordinator_pb2.CreateKeyResponse(key=fake.keys[ecdsa.key_id])
    with pytest.raises(MpcError, match="^[A-Z_]+: scheme: asked for a schnorr-secp256k1-bip340 key") as e:
        c.create_key("y", scheme="schnorr-secp256k1-bip340")
    assert e.value.code == grpc.StatusCode.DATA_LOSS


def test_key_views_by_scheme() -> None:
    _, _, ed = _setup("ed25519")
    d = ed.describe()
    assert d["scheme"] == "ed25519" and d["solana_address"] == addresses.solana_address(ed.public_key) and d["path"] == "m"
    assert "ethereum_address" not in d and "xpub" not in d
    with pytest.raises(MpcError, match="^[A-Z_]+: derivation_path: an ed25519 key has no BIP32 derivation"):
        ed.describe("m/0")
    with pytest.raises(MpcError, match="^[A-Z_]+: derivation_path: "):
        ed.derive()
    _, _, tr = _setup("schnorr-secp256k1-bip340")
    d = tr.describe()
    assert d["internal_key"] == tr.public_key[1:].hex()
    assert d["address"] == addresses.taproot_address(tr.public_key) and d["address"].startswith("bc1p")
    assert d["tweak"].startswith("BIP86")
    t = native_forms(tr.scheme, tr.public_key, network="testnet", taproot_root=ROOT)
    assert t["address"].startswith("tb1p") and t["taproot_root"] == ROOT.hex() and t["output_key"] != d["output_key"]


@pytest.mark.parametrize(("scheme", "fields", "why"), [
    ("ed25519", {"public_key": b"\x00" * 32}, "^[A-Z_]+: key.public_key: is not a valid Ed25519 point"),
    ("ed25519", {"public_key": b"\x02" * 33}, "^[A-Z_]+: key.public_key: must be 32 bytes"),
    ("ed25519", {"chain_code": b"\x01" * 32}, "^[A-Z_]+: key.chain_code: must be empty"),
    ("schnorr-secp256k1-bip340", {"public_key": b"\x02" + b"\xff" * 32}, "^[A-Z_]+: key.public_key: is not a point on secp256k1"),
    ("schnorr-secp256k1-bip340", {"public_key": b"\x09" * 32}, "^[A-Z_]+: key.public_key: must be 33 bytes"),
    ("ed448", {}, "^[A-Z_]+: key.scheme: must be one of"),
])
def test_malformed_keys_from_the_coordinator(scheme: str, fields: dict[str, bytes], why: str) -> None:
    fake, c, key = _setup("ed25519" if scheme != "schnorr-secp256k1-bip340" else scheme)
    k = fake.keys[key.key_id]
    k.scheme = scheme
    for name, value in fields.items():
        setattr(k, name, value)
    with pytest.raises(MpcError, match=why) as e:
        c.get_key(key.key_id)
    assert e.value.code == grpc.StatusCode.DATA_LOSS


def test_ed25519_message_request_and_verified_signature() -> None:
    fake, c, key = _setup("ed25519")
    msg = b"\x1b[2Jtransfer 5 SOL\n" + bytes(range(256))
    r = c.submit_sign_request(key.key_id, message=msg, description="pay")
    sent = fake.calls[-1][1]
    assert bytes(sent.message) == msg and bytes(sent.digest) == hashlib.sha256(msg).digest()
    assert r.message == msg and r.request.digest == hashlib.sha256(msg).digest() and r.request.scheme == "ed25519"
    d = r.as_dict()
    assert d["scheme"] == "ed25519" and d["message_size"] == len(msg) and d["message_sha256"] == hashlib.sha256(msg).hexdigest()
    assert d["message_preview"].startswith("hex:1b5b324a") and "\x1b" not in str(d)  # never the raw bytes
    fake.finish(r.request_id)
    done = c.get_sign_request(r.request_id)
    assert isinstance(done.signature, SchnorrSignature) and done.state == "done"
    sig = done.signature
    assert sig.public_key == key.public_key and sig.verifies(msg)
    assert nacl.bindings.crypto_sign_open(sig.signature + msg, key.public_key) == msg  # PyNaCl agrees (raises if not)
    assert done.as_dict()["signature"]["signature"] == sig.signature.hex()
    info = c.get_request(r.request_id)
    assert info.signature == sig


def test_bip340_request_with_root_and_verified_signature() -> None:
    fake, c, key = _setup("schnorr-secp256k1-bip340")
    for root in (b"", ROOT):
        r = c.submit_sign_request(key.key_id, DIGEST, taproot_merkle_root=root)
        assert r.request.taproot_root == root and r.as_dict()["taproot_root"] == (root.hex() or None)
        fake.finish(r.request_id)
        sig = c.get_sign_request(r.request_id).signature
        assert isinstance(sig, SchnorrSignature)
        q = addresses.taproot_output_key(key.public_key, root)
        assert sig.public_key == q == signing_key(key.scheme, key.public_key, root)
        assert ssa.verify_(DIGEST, q, sig.signature)  # btclib (ecc), a second independent BIP340 implementation
        assert addresses.p2tr_output_key(addresses.taproot_address(key.public_key, root)) == q


def _tamper(fake: FakeSchnorrCoordinator, rid: str, **changes: Any) -> None:
    info = fake.requests[rid]
    for name, value in changes.items():
        if name.startswith("sig_"):
            setattr(info.signature, name[4:], value)
        else:
            setattr(info, name, value)


@pytest.mark.parametrize(("scheme", "changes", "why"), [
    ("ed25519", {"sig_schnorr": b"\x00" * 64}, "^[A-Z_]+: signature: does not verify over the request's message"),
    ("ed25519", {"sig_schnorr": b"\x00" * 63}, "^[A-Z_]+: signature.schnorr: must be 64 bytes"),
    ("ed25519", {"sig_r": b"\x01" * 32}, "^[A-Z_]+: signature: r, s, der and recovery_id must be empty"),
    ("ed25519", {"message": b"another message"}, "^[A-Z_]+: message: its SHA-256 is not the request's digest"),
    ("ed25519", {"taproot_merkle_root": ROOT}, "^[A-Z_]+: taproot_merkle_root: is not the request's"),
    ("schnorr-secp256k1-bip340", {"taproot_merkle_root": ROOT}, "^[A-Z_]+: taproot_merkle_root: is not the request's"),
    ("schnorr-secp256k1-bip340", {"message": b"m"}, "^[A-Z_]+: message: must be empty"),
    ("schnorr-secp256k1-bip340", {"sig_public_key": b"\x02" * 32}, "^[A-Z_]+: signature: does not verify over the request's digest"),
])
def test_a_lying_coordinator_is_data_loss(scheme: str, changes: dict[str, Any], why: str) -> None:
    fake, c, key = _setup(scheme)
    r = c.submit_sign_request(key.key_id, DIGEST if scheme != "ed25519" else b"", message=b"hello" if scheme == "ed25519" else b"")
    fake.finish(r.request_id)
    _tamper(fake, r.request_id, **changes)
    c2 = requester(fake)  # a client that did not pin the request
    with pytest.raises(MpcError, match=why) as e:
        c2.get_sign_request(r.request_id)
    assert e.value.code == grpc.StatusCode.DATA_LOSS


def test_signature_by_another_key_is_refused() -> None:
    """A valid signature over the right message, by a key that is not the request's."""
    fake, c, key = _setup("schnorr-secp256k1-bip340")
    other = c.create_key("other", scheme="schnorr-secp256k1-bip340")
    r = c.submit_sign_request(key.key_id, DIGEST)
    fake.secrets[key.key_id] = fake.secrets[other.key_id]
    fake.finish(r.request_id)
    with pytest.raises(MpcError, match="^[A-Z_]+: signature.public_key: .* is not key") as e:
        c.get_sign_request(r.request_id)
    assert e.value.code == grpc.StatusCode.DATA_LOSS


def test_submit_refuses_bad_fields_before_sending() -> None:
    fake, c, key = _setup("ed25519")
    n = len(fake.calls)
    for kwargs, why in (
        ({"message": b"x" * 65537}, "^[A-Z_]+: message: must be 1 to 65536 bytes"),
        ({"message": b"x", "digest": b"\x00" * 32}, "^[A-Z_]+: digest: must be empty or the SHA-256 of message"),
        ({"digest": DIGEST, "taproot_merkle_root": b"\x00" * 31}, "^[A-Z_]+: taproot_merkle_root: must be empty"),
    ):
        with pytest.raises(MpcError, match=why) as e:
            c.submit_sign_request(key.key_id, **kwargs)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(fake.calls) == n
    c.submit_sign_request(key.key_id, message=b"x" * 65536)  # the bound itself


def test_a_substituted_message_is_refused_at_submit() -> None:
    fake, c, key = _setup("ed25519")

    def swap(info: coordinator_pb2.SignRequestInfo) -> coordinator_pb2.SignRequestInfo:
        info.message = b"hello!"  # does not match the canonical digest either: caught as DATA_LOSS
        return info

    fake.evil["SubmitSignRequest"] = swap
    with pytest.raises(MpcError, match="^[A-Z_]+: message: its SHA-256") as e:
        c.submit_sign_request(key.key_id, message=b"hello")
    assert e.value.code == grpc.StatusCode.DATA_LOSS


def test_verify_schnorr_never_raises() -> None:
    for scheme in ("ed25519", "schnorr-secp256k1-bip340", "ecdsa-secp256k1"):
        for key, sig in ((b"", b""), (b"\x00" * 32, b"\x00" * 64), (b"\xff" * 32, b"\x01" * 64), (b"\x02" * 33, b"x" * 64)):
            assert verify_schnorr(scheme, key, b"m", sig) is False


def test_message_view_preview() -> None:
    assert message_view(b"hello")["message_preview"] == "hello"
    v = message_view(b"a" * 100)
    assert v["message_preview"] == "a" * 64 + "..." and v["message_size"] == 100
    assert message_view(b"caf\xc3\xa9")["message_preview"] == "hex:636166c3a9"
    assert message_view(b"\x00")["message_sha256"] == hashlib.sha256(b"\x00").hexdigest()


def test_schnorr_signature_from_proto_is_strict() -> None:
    good = common_pb2.Signature(schnorr=b"\x01" * 64, public_key=b"\x02" * 32)
    assert SchnorrSignature.from_proto("r", "ed25519", good, [1, 2]).signers == (1, 2)
    for bad in (common_pb2.Signature(schnorr=b"\x01" * 64, public_key=b"\x02" * 33),
                common_pb2.Signature(schnorr=b"\x01" * 64, public_key=b"\x02" * 32, der=b"\x30")):
        with pytest.raises(MpcError) as e:
            SchnorrSignature.from_proto("r", "ed25519", bad, [1])
        assert e.value.code == grpc.StatusCode.DATA_LOSS
    with pytest.raises(MpcError, match="^[A-Z_]+: signature.scheme"):
        SchnorrSignature("r", "ecdsa-secp256k1", b"\x01" * 64, b"\x02" * 32, ())


@pytest.mark.parametrize("scheme", ["ed25519", "schnorr-secp256k1-bip340"])
def test_a_real_frost_signature_is_returned_verified(scheme: str) -> None:
    """End to end below the network: a key dealt and signed by crypto_core.frost (RFC 9591 rounds,
    2-of-3), relayed by the fake coordinator; the SDK's independent checks accept it, with and
    without a Taproot root, and the address shown is the key it verifies under."""
    fake = FakeSchnorrCoordinator(frost=True)
    c = requester(fake)
    key = c.create_key("f", scheme=scheme)
    roots = (b"", ROOT) if scheme == "schnorr-secp256k1-bip340" else (b"",)
    for root in roots:
        if scheme == "ed25519":
            r = c.submit_sign_request(key.key_id, message=b"a solana transaction message")
        else:
            r = c.submit_sign_request(key.key_id, DIGEST, taproot_merkle_root=root)
        fake.finish(r.request_id)
        sig = c.get_sign_request(r.request_id).signature
        assert isinstance(sig, SchnorrSignature) and sig.signers == (1, 2)
        if scheme == "ed25519":
            assert nacl.bindings.crypto_sign_open(sig.signature + b"a solana transaction message", key.public_key)
            assert addresses.solana_public_key(key.describe()["solana_address"]) == sig.public_key
        else:
            assert ssa.verify_(DIGEST, sig.public_key, sig.signature)
            assert addresses.p2tr_output_key(native_forms(scheme, key.public_key, taproot_root=root)["address"]) == sig.public_key


@pytest.mark.parametrize("scheme", ["ed25519", "schnorr-secp256k1-bip340"])
def test_a_schnorr_keys_operation_carries_its_scheme_and_its_backup_is_refused(scheme: str) -> None:
    """Issue 16 (C2): a refresh/reshare of a FROST key is built as a KeyOperation v2 naming the
    key's scheme (no chain code); backups of FROST keys stay refused before anything is built."""
    from governance.keyop import KeyOpKind

    fake, c, key = _setup(scheme)
    n = len(fake.calls)
    try:
        op = c.build_key_operation(KeyOpKind.REFRESH, key.key_id)
    except MpcError as e:  # the fake has no roster: the key itself was accepted
        assert "is a " + scheme + " key" not in e.message, e.message
        assert [name for name, _ in fake.calls[n:]][:1] == ["GetKey"]
    else:
        assert op.scheme == scheme and op.public_key == key.public_key and op.chain_code == b""
    with pytest.raises(MpcError, match=f"^[A-Z_]+: key_id: {key.key_id.hex()} is a {scheme} key: backups") as e:
        c._checked_key(key.key_id)
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_signing_team_sign_schnorr() -> None:
    from mpcnet.client import SigningTeam

    fake = FakeSchnorrCoordinator(frost=True)
    fake.auto_sign = True
    c = requester(fake)
    team = SigningTeam(c, [requester(fake), requester(fake)])
    ed = c.create_key("e", scheme="ed25519")
    sig = team.sign_schnorr(ed.key_id, message=b"gm")
    assert sig.verifies(b"gm") and sig.public_key == ed.public_key
    tr = c.create_key("t", scheme="schnorr-secp256k1-bip340")
    sig = team.sign_schnorr(tr.key_id, digest=DIGEST, taproot_merkle_root=ROOT)
    assert ssa.verify_(DIGEST, sig.public_key, sig.signature)
    with pytest.raises(MpcError, match="is a schnorr-secp256k1-bip340 key \\(use sign_schnorr\\)") as e:
        team.sign(tr.key_id, DIGEST)
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(MpcError, match="message: required for an ed25519 key") as e:
        team.sign(ed.key_id, DIGEST)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
