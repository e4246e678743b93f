"""Issue 10 items 10-12: public keys are validated SEC1 points wherever the SDK accepts them; a
key's description gives the *derived* chain code and the BIP32 xpub (checked against the BIP-0032
test vectors and the independent ``hdwallets`` library); signatures come as compact ``r||s``,
Ethereum ``r||s||v`` (27/28 or EIP-155) and with a PEM public key OpenSSL verifies with."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from coincurve import PrivateKey, PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hdwallets import BIP32

from crypto_core.group import HALF_Q, Point, Q
from mpcnet.client import Key, MpcError, SignatureResult, SignRequest, ethereum_address
from mpcnet.client.formats import MAX_CHAIN_ID, check_public_key, public_key_pem
from mpcnet.wire.mpc.v1 import common_pb2, coordinator_pb2

from ..governance.gov_util import request as signing_request

VECTORS = json.loads((Path(__file__).parent / "vectors" / "bip32-public-derivation.json").read_text())
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58check_decode(s: str) -> bytes:
    """The 78-byte payload of an extended key (written here, independent of crypto_core._b58)."""
    n = 0
    for ch in s:
        n = n * 58 + _B58.index(ch)
    raw = n.to_bytes(82, "big")
    body, chk = raw[:-4], raw[-4:]
    assert hashlib.sha256(hashlib.sha256(body).digest()).digest()[:4] == chk
    return body


def key_of(public_key: bytes, chain_code: bytes) -> Key:
    return Key(b"\x01" * 32, "k", public_key, chain_code, 2, 3, "active", 0)


def secret(i: int) -> bytes:
    return hashlib.sha256(b"wallet-formats %d" % i).digest()


# --- item 10: public inputs are validated SEC1 points ----------------------------------------

G_COMPRESSED = Point.base_mul(1).encode()
G_UNCOMPRESSED = Point.base_mul(1).encode_uncompressed()
HYBRID = bytes([6 + (G_UNCOMPRESSED[-1] & 1)]) + G_UNCOMPRESSED[1:]  # libsecp256k1 parses it; we do not
BAD_POINTS = [
    b"", b"\x00", bytes(33), bytes(65), b"\x02" + bytes(32), b"\x04" + bytes(64), HYBRID, G_COMPRESSED[:-1],
    G_COMPRESSED + b"\x00", b"\x05" + G_COMPRESSED[1:], b"\x02" + b"\xff" * 32, G_UNCOMPRESSED[:-1] + b"\x00",
]


@pytest.mark.parametrize("bad", BAD_POINTS)
def test_ethereum_address_refuses_what_is_not_a_point(bad: bytes) -> None:
    with pytest.raises(MpcError, match="^INVALID_ARGUMENT: public_key: ") as e:
        ethereum_address(bad)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(MpcError, match="public_key"):
        public_key_pem(bad)


def test_ethereum_address_of_a_known_key_in_both_encodings() -> None:
    # the address of private key 1 (a well-known value)
    assert ethereum_address(G_COMPRESSED) == "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
    assert ethereum_address(G_UNCOMPRESSED) == "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
    for not_bytes in ("02" + "00" * 32, None, 5):
        with pytest.raises(MpcError, match="public_key: must be bytes"):
            ethereum_address(not_bytes)  # type: ignore[arg-type]
    assert check_public_key(bytearray(G_COMPRESSED)).format() == G_COMPRESSED


@pytest.mark.parametrize("field", ["public_key", "chain_code", "key_id"])
def test_a_malformed_key_from_the_coordinator_is_data_loss(field: str) -> None:
    good = {"key_id": b"\x01" * 32, "public_key": G_COMPRESSED, "chain_code": b"\x02" * 32}
    assert Key.from_proto(common_pb2.KeyInfo(**good)).public_key == G_COMPRESSED
    bads = BAD_POINTS + [G_UNCOMPRESSED] if field == "public_key" else [b"", b"\x00" * 31, b"\x00" * 33]
    for bad in bads:
        with pytest.raises(MpcError, match=f"^DATA_LOSS: key.{field}: .*coordinator sent a malformed key") as e:
            Key.from_proto(common_pb2.KeyInfo(**{**good, field: bad}))
        assert e.value.code == grpc.StatusCode.DATA_LOSS
    with pytest.raises(MpcError, match=f"^INVALID_ARGUMENT: {field}: "):
        Key(**{"label": "", "threshold": 2, "parties": 3, "status": "active", "created_unix_ms": 0, **good, field: b""})


# --- item 11: the derived chain code and the xpub --------------------------------------------


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: f"v{c['vector']}:{c['child_chain']}")
def test_describe_matches_the_bip32_test_vectors(case: dict[str, object]) -> None:
    parent = b58check_decode(str(case["parent"]))
    child = b58check_decode(str(case["child"]))
    path = [int(i) for i in case["path"]]  # type: ignore[attr-defined]
    d = key_of(parent[45:78], parent[13:45]).describe(path)
    mine = b58check_decode(d["xpub"])
    assert d["path"] == "m" + "".join(f"/{i}" for i in path)
    assert d["public_key"] == child[45:78].hex() and d["chain_code"] == child[13:45].hex()
    # version, parent fingerprint, child number, chain code, key: as the vector's
    assert mine[:4] == child[:4] and mine[5:] == child[5:]
    # depth counts from the key described (a threshold key is its own root)
    assert mine[4] == len(path) and child[4] == parent[4] + len(path)
    if parent[4] == 0:  # from a master key, the whole xpub string is the vector's
        assert d["xpub"] == case["child"]


def test_describe_without_a_path_is_the_root_xpub() -> None:
    case = VECTORS["cases"][4]  # vector 2, chain m
    parent = b58check_decode(case["parent"])
    d = key_of(parent[45:78], parent[13:45]).describe()
    assert d["xpub"] == case["parent"] and d["chain_code"] == parent[13:45].hex() and d["path"] == "m"


PATHS = [[], [0], [0, 1], [1, 0], [7, 2**31 - 1, 3], [1, 2, 3, 4, 5], [2**31 - 1]]


@pytest.mark.parametrize("seed", range(3))
def test_describe_matches_an_independent_bip32_library(seed: int) -> None:
    pk = PublicKey.from_secret(secret(seed)).format()
    cc = hashlib.sha256(b"chain code %d" % seed).digest()
    key = key_of(pk, cc)
    root = bytes.fromhex("0488b21e") + bytes(1) + bytes(4) + bytes(4) + cc + pk
    lib = BIP32.from_xpub(root)
    for path in PATHS:
        d = key.describe(path)
        want_cc, want_pk = lib.get_extended_pubkey_from_path(path) if path else (lib.master_chaincode, lib.master_pubkey)
        assert d["public_key"] == want_pk.hex() and d["chain_code"] == want_cc.hex(), path
        assert b58check_decode(d["xpub"]) == lib.get_xpub_from_path(path), path
        assert d["chain_code"] != cc.hex() or not path  # the issue: the root chain code was printed
        assert d["public_key_uncompressed"] == PublicKey(want_pk).format(compressed=False).hex()
        assert d["ethereum_address"] == ethereum_address(want_pk)
        assert d["public_key_pem"] == public_key_pem(want_pk)
        assert key.derive(path) == want_pk
    assert set(key.describe("m/0/1")) == {
        "key_id", "label", "status", "threshold", "parties", "epoch", "committee", "path", "public_key", "public_key_uncompressed",
        "ethereum_address", "public_key_pem", "chain_code", "xpub", "created_unix_ms",
    }


# --- item 12: signature formats ----------------------------------------------------------------

DIGEST = hashlib.sha256(b"wallet formats").digest()


def signature(i: int, digest: bytes = DIGEST) -> SignatureResult:
    sk = PrivateKey(secret(i))
    rec = sk.sign_recoverable(digest, hasher=None)
    r, s, v = int.from_bytes(rec[:32], "big"), int.from_bytes(rec[32:64], "big"), rec[64]
    return SignatureResult("req-1", r, s, v, encode_dss_signature(r, s), sk.public_key.format(), (1, 2))


def recover(sig64: bytes, recovery_id: int, digest: bytes = DIGEST) -> bytes:
    return PublicKey.from_signature_and_message(sig64 + bytes([recovery_id]), digest, hasher=None).format()


@pytest.mark.parametrize("i", range(6))
def test_compact_and_ethereum_forms_recover_the_signing_key(i: int) -> None:
    sig = signature(i)
    d = sig.as_dict()
    compact = bytes.fromhex(d["compact"])
    eth = bytes.fromhex(d["ethereum"])
    assert len(compact) == 64 and compact == bytes.fromhex(d["r"] + d["s"])
    assert len(eth) == 65 and eth[:64] == compact and eth[64] == d["v"] == 27 + sig.recovery_id
    assert d["chain_id"] is None
    assert recover(compact, sig.recovery_id) == sig.public_key
    assert recover(eth[:64], eth[64] - 27) == sig.public_key
    assert sig.recovers_to(DIGEST) and not sig.recovers_to(hashlib.sha256(b"other").digest())


@pytest.mark.parametrize(("chain_id", "base"), [(1, 37), (137, 309), (MAX_CHAIN_ID, MAX_CHAIN_ID * 2 + 35)])
def test_eip155_v(chain_id: int, base: int) -> None:
    for i in range(4):
        sig = signature(i)
        d = sig.as_dict(chain_id)
        assert d["v"] == base + sig.recovery_id == chain_id * 2 + 35 + sig.recovery_id
        assert d["chain_id"] == chain_id
        eth = bytes.fromhex(d["ethereum"])
        assert eth[:64].hex() == d["compact"] and int.from_bytes(eth[64:], "big") == d["v"]
        assert len(eth) == (65 if chain_id == 1 else 64 + (d["v"].bit_length() + 7) // 8)
        assert recover(eth[:64], int.from_bytes(eth[64:], "big") - chain_id * 2 - 35) == sig.public_key


@pytest.mark.parametrize("bad", [0, -1, MAX_CHAIN_ID + 1, 2**256, True, False, 1.0, "1", b"\x01"])
def test_a_bad_chain_id_is_refused(bad: object) -> None:
    with pytest.raises(MpcError, match="^INVALID_ARGUMENT: chain_id: "):
        signature(0).as_dict(bad)  # type: ignore[arg-type]


def test_openssl_verifies_the_der_signature_with_the_pem_public_key(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "openssl is part of the machine (scripts/demo)"
    message = b"pay 1 ETH to the supplier"
    sig = signature(7, hashlib.sha256(message).digest())
    d = sig.as_dict()
    assert d["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----\n")
    (tmp_path / "pub.pem").write_text(d["public_key_pem"])
    (tmp_path / "sig.der").write_bytes(bytes.fromhex(d["der"]))
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "other").write_bytes(message + b"0")

    def verify(name: str) -> subprocess.CompletedProcess[str]:
        cmd = [openssl, "dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.der", name]
        return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=30)

    ok = verify("msg")
    assert ok.returncode == 0 and "Verified OK" in ok.stdout, ok.stderr
    assert verify("other").returncode != 0
    # the key description gives the same PEM
    assert key_of(sig.public_key, b"\x00" * 32).describe()["public_key_pem"] == d["public_key_pem"]


def _info(sig: common_pb2.Signature, digest: bytes = DIGEST) -> coordinator_pb2.SignRequestInfo:
    req = signing_request(digest=digest)
    return coordinator_pb2.SignRequestInfo(
        request_id=req.request_id, state=coordinator_pb2.SIGN_REQUEST_STATE_DONE, request=req.to_bytes(),
        signature=sig, signers=[1, 2],
    )


def _proto(s: SignatureResult) -> common_pb2.Signature:
    return common_pb2.Signature(
        r=s.r.to_bytes(32, "big"), s=s.s.to_bytes(32, "big"), recovery_id=s.recovery_id, der=s.der, public_key=s.public_key
    )


def test_sign_request_as_dict_passes_the_chain_id() -> None:
    sig = signature(3)
    r = SignRequest.from_proto(_info(_proto(sig)))
    assert r.signature == SignatureResult(r.request_id, sig.r, sig.s, sig.recovery_id, sig.der, sig.public_key, (1, 2))
    d = r.as_dict(chain_id=137)["signature"]
    assert d["v"] == 309 + sig.recovery_id and d["chain_id"] == 137
    assert r.as_dict()["signature"]["v"] == 27 + sig.recovery_id


def test_a_malformed_signature_from_the_coordinator_is_data_loss() -> None:
    sig = signature(4)
    good = _proto(sig)
    other = signature(5)
    high_s = Q - sig.s
    assert high_s > HALF_Q
    bad = {
        "r": common_pb2.Signature(**{**_fields(good), "r": good.r[1:]}),
        "s": common_pb2.Signature(**{**_fields(good), "s": high_s.to_bytes(32, "big"), "der": encode_dss_signature(sig.r, high_s)}),
        "recovery_id": common_pb2.Signature(**{**_fields(good), "recovery_id": 4}),
        "der": common_pb2.Signature(**{**_fields(good), "der": other.der}),
        "public_key": common_pb2.Signature(**{**_fields(good), "public_key": HYBRID}),
        "recovers": common_pb2.Signature(**{**_fields(good), "public_key": other.public_key}),
    }
    for name, proto in bad.items():
        with pytest.raises(MpcError, match="^DATA_LOSS: signature.*the coordinator sent a malformed signature") as e:
            SignRequest.from_proto(_info(proto))
        assert e.value.code == grpc.StatusCode.DATA_LOSS, name
    zero = common_pb2.Signature(**{**_fields(good), "r": bytes(32)})
    with pytest.raises(MpcError, match="DATA_LOSS: signature.r: must be in 1..q-1"):
        SignatureResult.from_proto("x", zero, [1])


def _fields(s: common_pb2.Signature) -> dict[str, object]:
    return {"r": s.r, "s": s.s, "recovery_id": s.recovery_id, "der": s.der, "public_key": s.public_key}


def test_the_ethereum_signature_grows_to_66_bytes_exactly_when_v_passes_255() -> None:
    """The boundary the docs state: chain id 110 with recovery id 1 gives v = 256 (two bytes)."""
    from mpcnet.client import formats

    assert [len(formats.ethereum_signature(1, 1, rid, 109)) for rid in (0, 1)] == [65, 65]
    assert [len(formats.ethereum_signature(1, 1, rid, 110)) for rid in (0, 1)] == [65, 66]


def test_recovery_ids_2_and_3_have_no_ethereum_v() -> None:
    """Recovery id 2 on chain c would give the same EIP-155 v as id 0 on chain c + 1: only ids 0
    and 1 have an Ethereum form (ids 2/3 need R.x >= n, probability about 2^-127)."""
    from mpcnet.client import formats

    for rid in (2, 3, -1, True):
        with pytest.raises(MpcError) as e:
            formats.ethereum_v(rid, 1)  # type: ignore[arg-type]
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.message.startswith("recovery_id:")
    assert formats.ethereum_v(0, 1) == 37 and formats.ethereum_v(1) == 28
