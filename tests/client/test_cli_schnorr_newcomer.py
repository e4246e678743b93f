"""The mistakes a newcomer makes with Schnorr keys (issue 16), through ``mpc`` against the in-memory
coordinator (tests/client/schnorr_fake) whose SubmitSignRequest applies the real coordinator's
per-scheme rules (``coordinator.schemes.check_submission``): options that do not fit the key's
scheme are one usage line naming the option and saying what the key takes (exit 2, no request
made), never the coordinator's wire field names; ``mpc keys`` shows every key's scheme (ECDSA
too) and pools only for ECDSA keys; a text message ending in a newline is previewed as text."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from coordinator.schemes import check_submission
from mpcnet.client import cli
from mpcnet.client.cli_render import key_list_line
from mpcnet.client.schnorr import a_scheme, message_view
from mpcnet.common.rpc import RpcError

from .lifecycle_fake import FakeRpcError
from .schnorr_fake import FakeSchnorrCoordinator, requester

SIGHASH = hashlib.sha256(b"sighash").hexdigest()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeSchnorrCoordinator:
    f = FakeSchnorrCoordinator()
    submit = f._SubmitSignRequest

    def strict_submit(req: Any) -> Any:  # the real coordinator's rules before the fake's own
        key = f.keys[bytes(req.key_id)]
        try:
            check_submission(
                key.scheme or "ecdsa-secp256k1", bytes(req.digest), bytes(req.message), bytes(req.taproot_merkle_root),
                tuple(req.derivation_path),
            )
        except RpcError as e:
            raise FakeRpcError(e.code, e.message) from None
        return submit(req)

    f._SubmitSignRequest = strict_submit  # type: ignore[method-assign]

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


@pytest.mark.parametrize(
    ("scheme", "extra", "option", "says"),
    [
        ("ed25519", ["--digest", SIGHASH], "--digest", "which signs a message (PureEdDSA): give --message-file FILE or --message-hex HEX"),
        ("ecdsa-secp256k1", ["--message-hex", "00ff"], "--message-hex", "which signs a --digest HEX (the 32-byte hash to sign)"),
        ("schnorr-secp256k1-bip340", ["--message-file", "MSG"], "--message-file", "e.g. a Taproot sighash); messages are for ed25519"),
        ("ecdsa-secp256k1", ["--digest", SIGHASH, "--taproot-root", SIGHASH], "--taproot-root", "for schnorr-secp256k1-bip340 keys only"),
        ("ed25519", ["--message-hex", "00", "--path", "m/0"], "--path", "which has no BIP32 derivation (leave --path out)"),
        ("schnorr-secp256k1-bip340", ["--digest", SIGHASH, "--path", "m/0/1"], "--path", "which has no BIP32 derivation"),
    ],
)
def test_options_that_do_not_fit_the_scheme_are_usage_errors(
    fake: FakeSchnorrCoordinator, tmp_path: Path, scheme: str, extra: list[str], option: str, says: str,
) -> None:
    kid = _key(scheme)
    msg = tmp_path / "tx.bin"
    msg.write_bytes(b"transfer 1 SOL to Bob\n")
    argv = [str(msg) if a == "MSG" else a for a in extra]
    code, out, err = run("request", "sign", "--key", kid, *argv)
    assert code == 2 and out == "" and not fake.requests
    assert err.count("\n") == 1 and err.startswith(f"mpc: error: {option}: key {kid} is {a_scheme(scheme)} key")
    assert says in err and "(see 'mpc request sign --help')" in err


def test_other_refusals_stay_the_coordinators(fake: FakeSchnorrCoordinator) -> None:
    """An INVALID_ARGUMENT that is not a scheme mismatch is the coordinator's error, exit 1."""
    kid = _key("ed25519")
    fake.evil["SubmitSignRequest"] = lambda out: (_ for _ in ()).throw(
        FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "description: too long")
    )
    code, _, err = run("request", "sign", "--key", kid, "--message-hex", "00")
    assert code == 1 and "INVALID_ARGUMENT: description: too long" in err


def test_articles() -> None:
    assert [a_scheme(s) for s in ("ed25519", "ecdsa-secp256k1", "schnorr-secp256k1-bip340")] == [
        "an ed25519", "an ecdsa-secp256k1", "a schnorr-secp256k1-bip340",
    ]
    with pytest.raises(RpcError, match="^derivation_path: an ed25519 key has no derivation path"):
        check_submission("ed25519", b"", b"m", b"", (0,))
    with pytest.raises(RpcError, match="must be empty for an ecdsa-secp256k1 key"):
        check_submission("ecdsa-secp256k1", b"\x00" * 32, b"m", b"", ())


def test_keys_show_every_scheme_and_pools_only_for_ecdsa(fake: FakeSchnorrCoordinator) -> None:
    row = {"key_id": "ab", "status": "active", "threshold": 3, "parties": 5, "committee": [1, 2], "epoch": 0, "label": "x"}
    assert "  ecdsa-secp256k1 0x1  epoch 0 nodes 1,2  presigs 4  x" in key_list_line(
        {**row, "ethereum_address": "0x1", "presignatures_ready": 4}
    )
    ed = key_list_line({**row, "scheme": "ed25519", "solana_address": "So1", "presignatures_ready": 0})
    assert "  ed25519 So1  epoch 0 nodes 1,2  x" in ed and "presigs" not in ed
    _key("ecdsa-secp256k1")
    _key("schnorr-secp256k1-bip340")
    code, out, _ = run("keys")
    assert code == 0 and " ecdsa-secp256k1 0x" in out and " schnorr-secp256k1-bip340 bc1p" in out


def test_a_text_file_with_a_newline_is_previewed_as_text(fake: FakeSchnorrCoordinator, tmp_path: Path) -> None:
    assert message_view(b"pay\tBob\r\n")["message_preview"] == "pay\tBob\r\n"
    assert message_view(b"pay\x1b[2J\n")["message_preview"].startswith("hex:")
    kid = _key("ed25519")
    msg = tmp_path / "tx.bin"
    msg.write_bytes(b"transfer 1 SOL to Bob\n")
    code, out, _ = run("request", "sign", "--key", kid, "--message-file", str(msg))
    assert code == 0 and '"transfer 1 SOL to Bob\\n"' in out


def test_status_shows_each_nodes_frost_nonces(monkeypatch: pytest.MonkeyPatch) -> None:
    """``mpc status``: ``frost nonces N`` per node once the coordinator holds any (the stock FROST
    signing draws from; a revoked node shows none), ``frost_nonces`` in JSON always."""
    from .lifecycle_fake import FakeCoordinator, admin_client

    f = FakeCoordinator()
    status = f._ClusterStatus  # type: ignore[attr-defined]
    stock = {1: 8, 2: 8, 3: 0}

    def with_nonces(req: Any) -> Any:
        st = status(req)
        for n in st.nodes:
            n.frost_nonces = stock.get(n.index, 0)
        return st

    f._ClusterStatus = with_nonces  # type: ignore[attr-defined]

    def client(ap: object, opts: cli.GlobalOpts) -> object:
        c = admin_client(f, "ada")
        c.close = lambda: None  # type: ignore[method-assign]
        return c

    monkeypatch.setattr(cli, "_client", client)
    code, out, _ = run("status")
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("node-")}
    assert code == 0 and lines["node-1"].endswith("frost nonces 8") and lines["node-3"].endswith("frost nonces 0")
    code, out, _ = run("status", "--json")
    assert code == 0 and [n["frost_nonces"] for n in json.loads(out)["nodes"]][:3] == [8, 8, 0]
    stock.clear()
    code, out, _ = run("status")
    assert code == 0 and "frost nonces" not in out  # an ECDSA-only cluster: no column


def test_approve_with_another_message_file_says_which_file(fake: FakeSchnorrCoordinator, tmp_path: Path) -> None:
    kid = _key("ed25519")
    good, other = tmp_path / "good.bin", tmp_path / "other.bin"
    good.write_bytes(b"pay 1 SOL to Bob\n")
    other.write_bytes(b"pay 9 SOL to Eve\n")
    code, out, _ = run("request", "sign", "--key", kid, "--message-file", str(good), "--json")
    rid = json.loads(out)["request_id"]
    code, _, err = run("approve", rid, "--expect-message-file", str(other))
    assert code == 1 and err.count("\n") == 1 and "nothing was signed" in err and not fake.requests[rid].approvals
    assert "(the expected digest is the SHA-256 of --expect-message-file '/" in err and "the request is for another message)" in err
