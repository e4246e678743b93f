"""Two newcomer-review items for Schnorr keys (issue 16), through ``mpc`` against the in-memory
coordinator (tests/client/schnorr_fake): an approver of a bip340 request sees the Taproot output
key and mainnet P2TR address its signature will be valid under (computed on the client from the
key's public key and the request's root; "unknown" when the key cannot be fetched, never a failed
view), and ``mpc pubkey --network`` on a key that has no Bitcoin network is a usage error naming
``--network`` (exit 2). BIP86 vector: bitcoin/bips bip-0086.mediawiki (account 0, first receiving
address)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from types import SimpleNamespace
from typing import Any, cast

import grpc
import pytest

from crypto_core.frost.public import frost_key_id
from governance.approval import SCHEME_BIP340
from mpcnet.client import cli
from mpcnet.client.cli_schnorr import taproot_outputs
from mpcnet.client.errors import MpcError
from mpcnet.client.sdk import Key, SignRequest
from mpcnet.common import addresses

from .lifecycle_fake import FakeRpcError
from .schnorr_fake import FakeSchnorrCoordinator, requester

SIGHASH = hashlib.sha256(b"sighash").hexdigest()
ROOT = hashlib.sha256(b"script tree").hexdigest()
# bitcoin/bips bip-0086.mediawiki: m/86'/0'/0'/0/0 internal key, output key and address
BIP86_INTERNAL = bytes.fromhex("cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115")
BIP86_OUTPUT = "a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c"
BIP86_ADDRESS = "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeSchnorrCoordinator:
    f = FakeSchnorrCoordinator()

    def client(ap: object, opts: cli.GlobalOpts) -> object:
        c = requester(f)
        c.close = lambda: None  # type: ignore[method-assign]
        return c

    monkeypatch.setattr(cli, "_client", client)
    return f


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["--cluster", "C", "--as", "carol", *argv])
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def _key(scheme: str) -> str:
    code, out, err = run("keygen", "--label", "k", "--scheme", scheme, "--json")
    assert code == 0, err
    return str(json.loads(out)["key_id"])


def _request(kid: str, *root: str) -> str:
    extra = ["--taproot-root", root[0]] if root else []
    code, out, err = run("request", "sign", "--key", kid, "--digest", SIGHASH, *extra, "--json")
    assert code == 0, err
    return str(json.loads(out)["request_id"])


def _expected(fake: FakeSchnorrCoordinator, kid: str, root: bytes) -> tuple[str, str]:
    out = addresses.taproot_output_key(bytes(fake.keys[bytes.fromhex(kid)].public_key), root)
    return out.hex(), addresses.p2tr_address(out, "mainnet")


@pytest.mark.parametrize("root", ["", ROOT])
def test_approver_sees_the_output_key_and_address(fake: FakeSchnorrCoordinator, root: str) -> None:
    kid = _key(SCHEME_BIP340)
    rid = _request(kid, *([root] if root else []))
    out_key, address = _expected(fake, kid, bytes.fromhex(root))
    assert address.startswith("bc1p")
    for argv in (["request", "show", rid], ["approve", rid], ["reject", rid]):
        code, out, err = run(*argv)
        assert code == 0, err
        assert f"\ntaproot output key  {out_key}\ntaproot address     {address}\n" in out
        code, out, err = run(*argv, "--json")
        assert code == 0, err
        d = json.loads(out)
        assert d["taproot_output_key"] == out_key and d["taproot_address"] == address
        assert d["taproot_root"] == (root or None)


def test_unknown_when_the_key_cannot_be_fetched(fake: FakeSchnorrCoordinator) -> None:
    kid = _key(SCHEME_BIP340)
    rid = _request(kid, ROOT)

    def refuse(out: Any) -> Any:
        raise FakeRpcError(grpc.StatusCode.PERMISSION_DENIED, "role: not allowed")

    fake.evil["GetKey"] = refuse
    code, out, err = run("request", "show", rid)
    assert code == 0, err
    assert ROOT in out and "unknown: the key could not be fetched" in out and "bc1p" not in out
    code, out, err = run("request", "show", rid, "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["taproot_root"] == ROOT and d["taproot_output_key"] is None and d["taproot_address"] is None


def test_other_schemes_fetch_no_key_and_show_no_taproot(fake: FakeSchnorrCoordinator) -> None:
    for scheme, payload in (("ecdsa-secp256k1", ["--digest", SIGHASH]), ("ed25519", ["--message-hex", "00ff"])):
        kid = _key(scheme)
        code, out, err = run("request", "sign", "--key", kid, *payload, "--json")
        rid = json.loads(out)["request_id"]
        fake.calls.clear()
        code, out, err = run("request", "show", rid, "--json")
        assert code == 0, err
        assert "taproot_output_key" not in json.loads(out)
        assert not [c for c in fake.calls if c[0] == "GetKey"]
        code, out, err = run("request", "show", rid)
        assert "taproot" not in out


def _fixed_key(public_key: bytes, scheme: str = SCHEME_BIP340) -> Key:
    return cast(Key, SimpleNamespace(scheme=scheme, public_key=public_key))


def _req(scheme: str = SCHEME_BIP340, root: bytes = b"", key_id: bytes = b"\x01" * 16) -> SignRequest:
    return cast(SignRequest, SimpleNamespace(request=SimpleNamespace(scheme=scheme, key_id=key_id, taproot_root=root)))


def test_bip86_vector() -> None:
    got = taproot_outputs(lambda kid: _fixed_key(BIP86_INTERNAL), _req(key_id=frost_key_id(SCHEME_BIP340, BIP86_INTERNAL)))
    assert got == {"taproot_output_key": BIP86_OUTPUT, "taproot_address": BIP86_ADDRESS}
    compressed = b"\x02" + BIP86_INTERNAL
    assert taproot_outputs(lambda kid: _fixed_key(compressed), _req(key_id=frost_key_id(SCHEME_BIP340, compressed))) is not None


def test_a_public_key_that_does_not_hash_to_the_requests_key_id_is_not_shown() -> None:
    """The approved request names the key id, which binds the scheme and the group key: a public key
    the coordinator misreports (another key's) never becomes the output key an approver sees."""
    other = frost_key_id(SCHEME_BIP340, b"\x03" + BIP86_INTERNAL)
    got = taproot_outputs(lambda kid: _fixed_key(b"\x02" + BIP86_INTERNAL), _req(key_id=other))
    assert got == {"taproot_output_key": None, "taproot_address": None}


def test_never_raises_for_a_key_that_does_not_fit() -> None:
    unknown = {"taproot_output_key": None, "taproot_address": None}

    def fail(kid: bytes) -> Key:
        raise MpcError(grpc.StatusCode.UNAVAILABLE, "coordinator: down")

    assert taproot_outputs(fail, _req()) == unknown
    assert taproot_outputs(lambda kid: _fixed_key(b"\x00" * 32), _req()) == unknown  # not on the curve
    assert taproot_outputs(lambda kid: _fixed_key(b"\x01" * 7), _req()) == unknown
    assert taproot_outputs(lambda kid: _fixed_key(BIP86_INTERNAL, "ed25519"), _req()) == unknown
    assert taproot_outputs(fail, _req("ecdsa-secp256k1")) is None


@pytest.mark.parametrize("scheme", ["ed25519", "ecdsa-secp256k1"])
def test_pubkey_network_on_a_key_without_one_is_a_usage_error(fake: FakeSchnorrCoordinator, scheme: str) -> None:
    kid = _key(scheme)
    code, out, err = run("pubkey", "--key", kid, "--network", "testnet")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "--network is for schnorr-secp256k1-bip340 keys" in err and scheme in err
    code, default_out, err = run("pubkey", "--key", kid)
    assert code == 0, err
    code, out, err = run("pubkey", "--key", kid, "--network", "mainnet")
    assert code == 0 and out == default_out, err


def test_pubkey_network_on_a_bip340_key(fake: FakeSchnorrCoordinator) -> None:
    kid = _key(SCHEME_BIP340)
    code, out, err = run("pubkey", "--key", kid, "--network", "testnet", "--json")
    assert code == 0, err
    assert "tb1p" in out
