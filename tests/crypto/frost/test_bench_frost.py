"""Smoke test of ``scripts/bench_protocol.py --scheme`` for the FROST schemes (tiny settings):
it reports keygen, commit, sign and total, and its sample signatures verify."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crypto_core.frost.signing import verify_signature

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("scheme", ["ed25519", "schnorr-secp256k1-bip340"])
def test_bench_protocol_frost(scheme: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    p = subprocess.run(
        [sys.executable, "scripts/bench_protocol.py", "--scheme", scheme, "-t", "2", "-n", "3", "--keygens", "1",
         "--signatures", "2", "--warmup", "0", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"{scheme} (FROST) 2-of-3" in p.stdout
    r = json.loads(out.read_text())
    assert r["config"]["scheme"] == scheme
    for phase in ("keygen", "commit", "sign", "total"):
        assert r[phase]["median"] > 0 and r[phase]["cpu_median"] > 0 and r[phase]["bytes"] > 0
    assert len(r["samples"]) == 2
    for s in r["samples"]:
        msg, sig = bytes.fromhex(s["message"]), bytes.fromhex(s["signature"])
        assert verify_signature(scheme, bytes.fromhex(s["public_key"]), msg, sig)
