"""FROST keys on real processes (issue 16): a 3-of-5 cluster creates one key of each Schnorr
scheme (through the SDK, and ``mpc keygen --scheme`` through the CLI) and signs through the
approval flow (requester1, approver1 and approver2). Every signature is checked by libraries
independent of this project's code: Ed25519 by ``cryptography`` (OpenSSL) and PyNaCl
(libsodium); BIP340 by coincurve's x-only verification (libsecp256k1) and btclib's pure-Python
verifier, under the Taproot output key of the group key (BIP86 without a script root, BIP341
with one). ``mpc pubkey`` prints the chain-native forms, ``mpc keys`` the scheme; a request
with the other scheme's fields is INVALID_ARGUMENT naming the field, and changes nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import base58
import bech32m  # type: ignore[import-untyped]
import grpc
import nacl.bindings
import pytest
from coincurve import PublicKeyXOnly
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from ecc.curves.curve import is_libsecp256k1_serving
from ecc.ecc import ssa

from crypto_core.frost.signing import signing_key
from mpcnet.client import Key, MpcClient, MpcError, SigningTeam
from mpcnet.cluster.launcher import LocalCluster

from .cli_util import cli
from .conftest import running_cluster

N, T = 5, 3
ED, TR = "ed25519", "schnorr-secp256k1-bip340"
ROOT = hashlib.sha256(b"a taproot script tree root").digest()


@pytest.fixture(scope="module")
def fc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory, "frost-3of5", N, T, presign=False) as c:
        yield c


@pytest.fixture(scope="module")
def admin(fc: LocalCluster) -> Iterator[MpcClient]:
    with MpcClient.from_cluster(fc.lay.dir, identity="admin1", timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def team(fc: LocalCluster) -> Iterator[SigningTeam]:
    with SigningTeam.from_cluster(fc.lay.dir, timeout=120) as t:
        yield t


@pytest.fixture(scope="module")
def ed_key(admin: MpcClient) -> Key:
    return admin.create_key("frost ed25519", scheme=ED)


@pytest.fixture(scope="module")
def tr_key(fc: LocalCluster, admin: MpcClient) -> Key:
    """The BIP340 key, made through ``mpc keygen --scheme`` (the CLI in this process)."""
    out = json.loads(cli("--cluster", str(fc.lay.dir), "--as", "admin1", "keygen", "--label", "frost taproot",
                         "--scheme", TR, "--json").stdout)
    assert out["scheme"] == TR and out["address"].startswith("bc1p")
    return admin.get_key(out["key_id"])


def ed25519_verifies(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """OpenSSL and libsodium agree (both raise or both accept)."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        openssl = True
    except Exception:  # InvalidSignature
        openssl = False
    try:
        sodium = nacl.bindings.crypto_sign_open(signature + message, public_key) == message
    except Exception:  # nacl.exceptions.BadSignatureError
        sodium = False
    assert openssl == sodium, "OpenSSL and libsodium disagree"
    return openssl


def bip340_verifies(output_key: bytes, msg: bytes, signature: bytes) -> bool:
    """libsecp256k1 (coincurve x-only) and btclib's pure-Python BIP340 agree."""
    assert not is_libsecp256k1_serving()  # btclib's own arithmetic, not libsecp256k1 again
    secp = bool(PublicKeyXOnly(output_key).verify(signature, msg))
    try:
        pure = bool(ssa.verify_(msg, output_key, signature))
    except Exception:  # btclib raises for a structurally invalid signature
        pure = False
    assert secp == pure, "libsecp256k1 and btclib disagree"
    return secp


def test_keys_of_each_scheme_are_active_3_of_5_without_chain_code(ed_key: Key, tr_key: Key) -> None:
    for k, scheme, length in ((ed_key, ED, 32), (tr_key, TR, 33)):
        assert (k.scheme, k.status, k.threshold, k.parties) == (scheme, "active", T, N)
        assert len(k.public_key) == length and k.chain_code == b""


def test_ed25519_message_signed_through_approvals_verifies_under_openssl_and_libsodium(
    team: SigningTeam, admin: MpcClient, ed_key: Key,
) -> None:
    seen_r: set[bytes] = set()
    for message in (b"pay 1 SOL to alice", bytes(range(256)) * 3):
        sig = team.sign_schnorr(ed_key.key_id, message=message, description="ed25519 on real processes")
        assert sig.public_key == ed_key.public_key and len(sig.signers) == T
        assert ed25519_verifies(ed_key.public_key, message, sig.signature)
        assert not ed25519_verifies(ed_key.public_key, message + b"!", sig.signature)
        seen_r.add(sig.signature[:32])
        info = admin.get_sign_request(sig.request_id)
        assert info.state == "done" and info.request.scheme == ED and info.message == message
        assert info.request.digest == hashlib.sha256(message).digest()
    assert len(seen_r) == 2


@pytest.mark.parametrize("root", [b"", ROOT], ids=["bip86", "script-root"])
def test_bip340_digest_signed_through_approvals_verifies_under_libsecp256k1_and_btclib(
    team: SigningTeam, admin: MpcClient, tr_key: Key, root: bytes,
) -> None:
    digest = hashlib.sha256(b"taproot sighash " + root).digest()
    sig = team.sign_schnorr(tr_key.key_id, digest=digest, taproot_merkle_root=root)
    out_key = signing_key(TR, tr_key.public_key, root)
    assert sig.public_key == out_key
    assert bip340_verifies(out_key, digest, sig.signature)
    assert not bip340_verifies(out_key, bytes([digest[0] ^ 1]) + digest[1:], sig.signature)
    if root:  # the script root changes the output key: not valid under the BIP86 key
        assert not bip340_verifies(signing_key(TR, tr_key.public_key), digest, sig.signature)
    info = admin.get_sign_request(sig.request_id)
    assert info.state == "done" and info.request.scheme == TR and info.request.taproot_root == root


def test_mpc_pubkey_prints_the_native_forms(fc: LocalCluster, ed_key: Key, tr_key: Key) -> None:
    base = ("--cluster", str(fc.lay.dir), "--as", "auditor1")
    ed = json.loads(cli(*base, "pubkey", "--key", ed_key.key_id.hex(), "--json").stdout)
    assert ed["scheme"] == ED and ed["public_key"] == ed_key.public_key.hex()
    assert base58.b58decode(ed["solana_address"]) == ed_key.public_key
    for network, hrp in (("mainnet", "bc1p"), ("testnet", "tb1p")):
        tr = json.loads(cli(*base, "pubkey", "--key", tr_key.key_id.hex(), "--network", network, "--json").stdout)
        assert tr["scheme"] == TR and tr["internal_key"] == tr_key.public_key[1:].hex()
        assert tr["output_key"] == signing_key(TR, tr_key.public_key).hex()
        assert tr["address"].startswith(hrp)
        dec = bech32m.decode(hrp[:2], tr["address"])
        assert (dec.witver, bytes(dec.witprog)) == (1, bytes.fromhex(tr["output_key"]))  # segwit v1 program x(Q)
    text = cli(*base, "pubkey", "--key", ed_key.key_id.hex()).stdout
    assert ed["solana_address"] in text


def test_mpc_keys_shows_the_scheme(fc: LocalCluster, ed_key: Key, tr_key: Key) -> None:
    base = ("--cluster", str(fc.lay.dir), "--as", "auditor1")
    keys = {k["key_id"]: k for k in json.loads(cli(*base, "keys", "--json").stdout)}
    assert keys[ed_key.key_id.hex()]["scheme"] == ED and keys[tr_key.key_id.hex()]["scheme"] == TR
    lines = cli(*base, "keys").stdout.splitlines()
    assert any(ed_key.key_id.hex() in ln and ED in ln for ln in lines)
    assert any(tr_key.key_id.hex() in ln and TR in ln for ln in lines)


def test_the_other_schemes_fields_are_invalid_argument_naming_the_field(
    team: SigningTeam, admin: MpcClient, ed_key: Key, tr_key: Key,
) -> None:
    before = len(admin.list_sign_requests())
    cases = [
        (ed_key, {"digest": b"\x01" * 32}, "message"),  # an ed25519 key signs a message, not a digest
        (ed_key, {"message": b"m", "taproot_merkle_root": ROOT}, "taproot_merkle_root"),
        (ed_key, {"message": b"m", "path": [0]}, "derivation_path"),
        (tr_key, {"message": b"a message for a bip340 key"}, "message"),
        (tr_key, {"digest": b"\x01" * 32, "path": [1]}, "derivation_path"),
        (tr_key, {"digest": b"\x01" * 31}, "digest"),
    ]
    for k, kw, field in cases:
        with pytest.raises(MpcError) as e:
            team.requester.submit_sign_request(k.key_id, **kw)  # type: ignore[arg-type]
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT, (kw, e.value)
        assert e.value.message.startswith(f"{field}: "), (kw, e.value.message)
    assert len(admin.list_sign_requests()) == before  # nothing was recorded


def test_the_cli_request_shows_approvers_the_scheme_message_digest_and_root(
    fc: LocalCluster, team: SigningTeam, ed_key: Key, tr_key: Key,
) -> None:
    def mpc(who: str, *args: str) -> str:
        return cli("--cluster", str(fc.lay.dir), "--as", who, *args).stdout

    message = b"\x1b[31m not a terminal escape \x07"
    req = json.loads(mpc("requester1", "request", "sign", "--key", ed_key.key_id.hex(), "--message-hex", message.hex(), "--json"))
    shown = mpc("approver1", "request", "show", req["request_id"])
    assert ED in shown and f"{len(message)} bytes" in shown and hashlib.sha256(message).hexdigest() in shown
    assert "\x1b" not in shown and "\x07" not in shown  # caller bytes never reach the terminal raw
    for ap in team.approvers:
        ap.approve(req["request_id"])
    done = team.requester.wait_sign_request(req["request_id"], timeout=60)
    assert done.state == "done" and ed25519_verifies(ed_key.public_key, message, done.signature.signature)

    digest = hashlib.sha256(b"cli taproot sighash").digest()
    req = json.loads(mpc("requester1", "request", "sign", "--key", tr_key.key_id.hex(), "--digest", digest.hex(),
                         "--taproot-root", ROOT.hex(), "--json"))
    shown = mpc("approver1", "request", "show", req["request_id"])
    assert TR in shown and ROOT.hex() in shown
    for ap in team.approvers:
        ap.approve(req["request_id"])
    done = team.requester.wait_sign_request(req["request_id"], timeout=60)
    assert done.state == "done" and bip340_verifies(signing_key(TR, tr_key.public_key, ROOT), digest, done.signature.signature)
