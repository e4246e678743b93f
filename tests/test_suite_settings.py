"""The suite's own settings: every property test follows $HYPOTHESIS_PROFILE, and each parallel
worker gets its own ports."""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path

import pytest

from mpcnet.cluster import port_range

from .conftest import WORKER_PORTS, scaled, worker_port_range

TESTS = Path(__file__).resolve().parent


def test_every_fixed_example_count_scales_with_the_profile() -> None:
    fixed = []
    for f in sorted(TESTS.rglob("*.py")):
        if f.name == "conftest.py" and f.parent == TESTS:
            continue
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if re.search(r"max_examples\s*=\s*(?!scaled\()", line):
                fixed.append(f"{f.relative_to(TESTS)}:{n}: {line.strip()}")
    assert not fixed, "use max_examples=scaled(N) so that HYPOTHESIS_PROFILE reaches the test:\n" + "\n".join(fixed)


def test_scaled_follows_the_profile_and_the_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYPOTHESIS_SCALE", raising=False)
    assert scaled(30, "ci") == 30
    assert scaled(30, "thorough") == 240
    assert scaled(30, "dev") == 12 and scaled(1, "dev") == 1
    monkeypatch.setenv("HYPOTHESIS_SCALE", "3")
    assert scaled(30, "ci") == 90 and scaled(30, "thorough") == 720


def _range(monkeypatch: pytest.MonkeyPatch, worker: str, count: int, run: str) -> tuple[int, int]:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(count))
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", run)
    r = worker_port_range()
    assert r is not None
    monkeypatch.setenv("MPCNET_PORT_RANGE", r)
    got = port_range()
    assert got is not None
    return got


def test_workers_of_a_run_get_disjoint_port_ranges_below_the_ephemeral_range(monkeypatch: pytest.MonkeyPatch) -> None:
    ephemeral_lo = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for run in ("0" * 32, "5f" * 16, "ab" * 16):
        ranges = [_range(monkeypatch, f"gw{i}", 4, run) for i in range(4)]
        for lo, hi in ranges:
            assert hi - lo + 1 == WORKER_PORTS and 20000 <= lo and hi < ephemeral_lo
        assert all(a[1] < b[0] for a, b in pairwise(sorted(ranges)))  # disjoint
        assert _range(monkeypatch, "gw2", 4, run) == ranges[2]  # the same run id: the same ranges
