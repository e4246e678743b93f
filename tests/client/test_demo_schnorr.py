"""scripts/demo's Schnorr step (mpcnet.cluster.demo_schnorr) against the in-memory coordinator with
real FROST signatures (tests/client/schnorr_fake, frost=True): every 'mpc' call it makes runs in
process; the approvals are simulated (the fake has no approval RPCs: approver2's --wait finishes
the request). The step on a real cluster needs the node and coordinator pieces (issue 16 B1/B2)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from mpcnet.client import cli
from mpcnet.cluster import demo_schnorr

from .schnorr_fake import FakeSchnorrCoordinator, requester


def _harness(monkeypatch: pytest.MonkeyPatch, fake: FakeSchnorrCoordinator) -> tuple[Any, Any]:
    def client(ap: object, opts: cli.GlobalOpts) -> object:
        c = requester(fake)
        c.close = lambda: None  # type: ignore[method-assign]
        return c

    monkeypatch.setattr(cli, "_client", client)

    def mpc(who: str, *args: str) -> list[str]:
        return [who, *args]

    def run_json(argv: list[str], what: str) -> Any:
        who, *args = argv
        if args[0] == "approve":  # simulated: the fake has no approvals
            if "--wait" not in args:
                return {"state": "pending_approval"}
            fake.finish(args[1])
            args = ["request", "show", args[1], "--json"]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["--cluster", "C", "--as", who, *args])
        assert code == 0, (what, err.getvalue())
        return json.loads(out.getvalue())

    return mpc, run_json


def test_the_demo_step_signs_and_checks_both_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeSchnorrCoordinator(frost=True)
    mpc, run_json = _harness(monkeypatch, fake)
    demo_schnorr.schnorr_keys(mpc, run_json, tmp_path, "hello from FROST", 7)
    out = capsys.readouterr().out
    assert "7. Schnorr keys" in out and "8. admin1 creates a BIP340" in out
    assert out.count("VALID under") == 2 and "Solana address" in out and "bc1p" in out and "tb1p" in out
    assert (tmp_path / "demo-message.txt").read_bytes() == b"hello from FROST"


def test_the_demo_step_fails_on_a_bad_signature(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeSchnorrCoordinator(frost=True)
    mpc, run_json = _harness(monkeypatch, fake)

    def bad(argv: list[str], what: str) -> Any:
        doc = run_json(argv, what)
        if "--wait" in argv and doc.get("signature"):
            sig = bytearray.fromhex(doc["signature"]["signature"])
            sig[0] ^= 1
            doc["signature"]["signature"] = sig.hex()
        return doc

    with pytest.raises(SystemExit, match="the Ed25519 signature does not verify"):
        demo_schnorr.schnorr_keys(mpc, bad, tmp_path, "m", 7)


def test_independent_checks_refuse_tampering() -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    sk = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
    pk = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    demo_schnorr.verify_ed25519(pk, b"m", sk.sign(b"m"))
    with pytest.raises(InvalidSignature):
        demo_schnorr.verify_ed25519(pk, b"n", sk.sign(b"m"))
    g = bytes.fromhex("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
    with pytest.raises(ValueError, match="coincurve"):
        demo_schnorr.verify_bip340(g, b"\x00" * 32, b"\x00" * 64)
