"""Smoke test of scripts/bench_rpc_floor.py on tiny settings (seconds, not figures): every server
mode and handler answers over mutual TLS, a variant is measured next to the base, the micro
floors are there, and the floor is the sum the script says it is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from mpcnet.cluster.launcher import child_env

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "scripts/bench_rpc_floor.py"


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout)


def test_reports_rpc_cpu_micro_floors_and_the_floor(tmp_path: Path) -> None:
    out = tmp_path / "floor.json"
    p = _run([
        "--rounds", "1", "--calls", "12", "--warmup", "2", "--concurrency", "1,3", "--micro-n", "3",
        "--variants", "nobdp,insecure", "--variant-pairs", "1", "--floor-concurrency", "3", "--variant-concurrency", "3",
        "--db-dir", str(tmp_path),
        "--out", str(out),
    ])
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    r: dict[str, Any] = json.loads(out.read_text())
    assert set(r["rpc"]) == {"sync/project/base", "sync/wrapped/base", "sync/bare/base", "aio/project/base", "aio/bare/base"}
    for name in r["rpc"]:
        assert set(r["rpc"][name]) == {"1", "3"}
    for levels in r["rpc"].values():
        for f in levels.values():
            assert f["client_cpu_us"] > 0 and f["server_cpu_us"] > 0 and f["calls_per_s"] > 0
            assert abs(f["cpu_us"] - f["client_cpu_us"] - f["server_cpu_us"]) < 0.2
    for name in ("sqlite_commit", "ed25519_sign", "ed25519_verify", "ecdsa_sign", "ecdsa_verify", "approval_bundle_decode",
                 "signpresigned_request_encode", "signpresigned_response_decode"):
        assert r["micro"][name]["cpu_ms"] >= 0 and r["micro"][name]["wall_ms"] > 0
    assert r["micro"]["sizes_bytes"]["signpresigned_request"] > 300  # it carries a real 2-approval bundle
    f = r["floor"]
    assert f["unary_calls"] == 5 and f["commits"] == 6.6 and f["approval_verifications"] == 6
    assert abs(f["floor_ms"] - sum(f["parts"].values())) < 0.01
    assert abs(f["ceiling_per_s"] - 1000 * r["cores"] / f["floor_ms"]) < 1
    assert f["extended_floor_ms"] > f["floor_ms"]
    pp = f["per_process_ms"]  # the extended floor split by process: coordinator, t signers, client
    assert abs(pp["coordinator"] + 2 * pp["each_signer"] + pp["client"] - f["extended_floor_ms"]) < 0.01
    for variant, handler in (("nobdp", "project"), ("insecure", "bare")):
        v = r["variants"][variant]
        assert v["pairs"] == 1 and v["handler"] == handler and v["base_cpu_us"] > 0 and v["variant_cpu_us"] > 0 and v["ratio_median"] > 0
    assert "variant nobdp (sync/project, c=3, 1 A/B pairs)" in p.stdout and "floor per 2-of-n signature" in p.stdout
    assert "load average before" in p.stdout


def test_refuses_bad_arguments() -> None:
    for args, field in ((["--concurrency", "0"], "--concurrency"), (["--variants", "fast"], "--variants"),
                        (["--rounds", "0"], "--rounds"), (["--variant-pairs", "0"], "--variant-pairs")):
        p = _run(args, timeout=60)
        assert p.returncode == 2 and field in p.stderr
    assert _run(["--help"], timeout=60).returncode == 0
