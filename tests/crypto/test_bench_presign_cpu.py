"""Smoke test of scripts/bench_presign_cpu.py on the smallest setting (one 2-of-2 signature)."""

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_presign_cpu.py"


def test_prints_one_cpu_line_per_configuration():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--configs", "2/2", "--reps", "1", "--warmup", "0"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert re.fullmatch(
        r"2-of-2: presign CPU median [\d.]+ ms \(min [\d.]+\), full signing CPU median [\d.]+ ms \(min [\d.]+\), reps 1\n", out
    )


def test_refuses_no_repetitions():
    r = subprocess.run([sys.executable, str(SCRIPT), "--reps", "0"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--reps" in r.stderr
