"""The 'mpc' commands with Schnorr keys (issue 16) against the in-memory coordinator
(tests/client/schnorr_fake): keygen --scheme, request sign --message-file / --message-hex /
--taproot-root, pubkey --network, keys and request show (scheme, message size and SHA-256, never
the raw message), usage errors (exit 2, nothing sent)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mpcnet.client import cli
from mpcnet.common import addresses

from .schnorr_fake import FakeSchnorrCoordinator, requester

ROOT = hashlib.sha256(b"tree").digest()


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


def _keygen(scheme: str) -> dict[str, object]:
    code, out, err = run("keygen", "--label", "k", "--scheme", scheme, "--json")
    assert code == 0, err
    doc: dict[str, object] = json.loads(out)
    return doc


def test_keygen_by_scheme_and_keys_list(fake: FakeSchnorrCoordinator) -> None:
    ed = _keygen("ed25519")
    assert ed["scheme"] == "ed25519" and ed["solana_address"] == addresses.solana_address(bytes.fromhex(str(ed["public_key"])))
    tr = _keygen("schnorr-secp256k1-bip340")
    assert str(tr["address"]).startswith("bc1p") and tr["tweak"] == "BIP86 (key path only, no script tree)"
    assert fake.calls[-1][1].scheme == "schnorr-secp256k1-bip340"
    code, out, _ = run("keys")
    assert code == 0
    assert f"ed25519 {ed['solana_address']}" in out and f"schnorr-secp256k1-bip340 {tr['address']}" in out
    code, _, err = run("keygen", "--scheme", "ed448")
    assert code == 2 and "--scheme" in err and "must be one of ecdsa-secp256k1, ed25519, schnorr-secp256k1-bip340" in err


def test_pubkey_native_forms(fake: FakeSchnorrCoordinator) -> None:
    tr = _keygen("schnorr-secp256k1-bip340")
    pk = bytes.fromhex(str(tr["public_key"]))
    code, out, _ = run("pubkey", "--key", str(tr["key_id"]), "--network", "testnet", "--json")
    d = json.loads(out)
    assert code == 0 and d["address"] == addresses.taproot_address(pk, network="testnet") and d["address"].startswith("tb1p")
    assert d["internal_key"] == pk[1:].hex() and d["output_key"] == addresses.taproot_output_key(pk).hex()
    code, out, _ = run("pubkey", "--key", str(tr["key_id"]), "--taproot-root", ROOT.hex())
    assert code == 0 and addresses.taproot_address(pk, ROOT) in out and ROOT.hex() in out
    ed = _keygen("ed25519")
    code, out, _ = run("pubkey", "--key", str(ed["key_id"]))
    assert code == 0 and str(ed["solana_address"]) in out and "solana_address" in out
    code, _, err = run("pubkey", "--key", str(ed["key_id"]), "--path", "m/0")
    assert code == 2 and "no BIP32 derivation" in err
    code, _, err = run("pubkey", "--key", str(ed["key_id"]), "--taproot-root", ROOT.hex())
    assert code == 2 and "--taproot-root is for schnorr-secp256k1-bip340 keys" in err
    code, _, err = run("pubkey", "--key", str(tr["key_id"]), "--network", "regtest")
    assert code == 2 and "--network" in err


def test_sign_a_message_file_and_show_it_safely(fake: FakeSchnorrCoordinator, tmp_path: Path) -> None:
    ed = _keygen("ed25519")
    msg = b"\x1b]0;owned\x07pay 5 SOL to\nsomeone"
    f = tmp_path / "tx.bin"
    f.write_bytes(msg)
    code, out, err = run("request", "sign", "--key", str(ed["key_id"]), "--message-file", str(f), "--description", "rent")
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out  # the hostile text rule: never the raw bytes
    assert f"{len(msg)} bytes, SHA-256 {hashlib.sha256(msg).hexdigest()}" in out and "ed25519" in out
    assert "hex:1b5d303b" in out  # the preview: not printable, so hex
    sent = fake.calls[-1][1]
    assert bytes(sent.message) == msg and bytes(sent.digest) == hashlib.sha256(msg).digest()
    rid = sent.request_id or next(iter(fake.requests))
    fake.finish(rid)
    code, out, _ = run("request", "show", rid, "--json")
    d = json.loads(out)
    assert code == 0 and d["scheme"] == "ed25519" and d["message_size"] == len(msg)
    sig = bytes.fromhex(d["signature"]["signature"])
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(str(ed["public_key"]))).verify(sig, msg)  # raises if not
    code, out, _ = run("requests")
    assert code == 0 and f"(ed25519, message {len(msg)} bytes)" in out


def test_sign_hex_message_and_taproot_root(fake: FakeSchnorrCoordinator) -> None:
    ed = _keygen("ed25519")
    code, out, err = run("request", "sign", "--key", str(ed["key_id"]), "--message-hex", "68656c6c6f", "--json")
    assert code == 0, err
    assert json.loads(out)["message_preview"] == "hello"
    tr = _keygen("schnorr-secp256k1-bip340")
    digest = hashlib.sha256(b"sighash").hexdigest()
    code, out, err = run("request", "sign", "--key", str(tr["key_id"]), "--digest", digest, "--taproot-root", ROOT.hex())
    assert code == 0, err
    assert ROOT.hex() in out and "schnorr-secp256k1-bip340" in out
    code, out, err = run("request", "sign", "--key", str(tr["key_id"]), "--digest", digest)
    assert code == 0 and "none: BIP86 key-path tweak" in out


@pytest.mark.parametrize(("extra", "says"), [
    ([], "give exactly one of --digest"),
    (["--digest", "00" * 32, "--message-hex", "00"], "got --digest and --message-hex"),
    (["--message-hex", "abc"], "--message-hex"),
    (["--message-hex", "zz"], "must be hex digits"),
    (["--message-hex", ""], "must be 1 to 65536 bytes as hex"),
    (["--message-hex", "00" * 65537], "must be 1 to 65536 bytes as hex"),
    (["--message-hex", "00", "--taproot-root", "00" * 32], "--taproot-root is for schnorr-secp256k1-bip340 keys"),
    (["--digest", "00" * 32, "--taproot-root", "00" * 31], "--taproot-root"),
    (["--message-file", "/nonexistent/m"], "--message-file"),
])
def test_request_sign_usage_errors(fake: FakeSchnorrCoordinator, extra: list[str], says: str) -> None:
    ed = _keygen("ed25519")
    n = len(fake.calls)
    code, _, err = run("request", "sign", "--key", str(ed["key_id"]), *extra)
    assert code == 2 and says in err, err
    assert len(fake.calls) == n  # nothing sent


def test_message_file_bounds(fake: FakeSchnorrCoordinator, tmp_path: Path) -> None:
    ed = _keygen("ed25519")
    for size, ok in ((0, False), (65536, True), (65537, False)):
        f = tmp_path / f"m{size}"
        f.write_bytes(b"a" * size)
        code, _, err = run("request", "sign", "--key", str(ed["key_id"]), "--message-file", str(f))
        assert (code == 0) is ok, err
        if not ok:
            assert code == 2 and "--message-file" in err and ("is empty" in err or "more than 65536 bytes" in err)


def test_approve_expects_the_message_file(fake: FakeSchnorrCoordinator, tmp_path: Path) -> None:
    ed = _keygen("ed25519")
    good, other = tmp_path / "good", tmp_path / "other"
    good.write_bytes(b"pay 1 SOL")
    other.write_bytes(b"pay 1000 SOL")
    code, out, err = run("request", "sign", "--key", str(ed["key_id"]), "--message-file", str(good), "--json")
    rid = json.loads(out)["request_id"]
    code, _, err = run("approve", rid, "--expect-message-file", str(other))
    assert code != 0 and "digest: request" in err and "nothing was signed" in err
    assert not fake.requests[rid].approvals
    code, _, err = run("approve", rid, "--expect-message-file", str(good), "--expect-digest", "00" * 32)
    assert code == 2 and "not both" in err
    code, out, err = run("approve", rid, "--expect-message-file", str(good))
    assert code == 0, err
    assert len(fake.requests[rid].approvals) == 1 and "9 bytes, SHA-256" in out
