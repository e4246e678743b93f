"""The suite's own settings: every property test follows $HYPOTHESIS_PROFILE, and each parallel
worker gets its own ports."""

from __future__ import annotations

import os
import re
from itertools import pairwise
from pathlib import Path

import pytest

from mpcnet.cluster.launcher import port_range

from .conftest import PORT_RANGE_AUTO_ENV, WORKER_PORTS, choose_port_range, scaled, worker_port_range

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
    many = [_range(monkeypatch, f"gw{i}", 64, "ab" * 16) for i in range(64)]  # smaller blocks
    assert all(hi - lo + 1 < WORKER_PORTS and 20000 <= lo and hi < ephemeral_lo for lo, hi in many)
    assert all(a[1] < b[0] for a, b in pairwise(sorted(many)))


def test_this_process_uses_its_own_block() -> None:
    """Under xdist: this worker's block, not the controller's (which the workers inherit)."""
    if os.environ.get(PORT_RANGE_AUTO_ENV) == "1":
        assert os.environ["MPCNET_PORT_RANGE"] == worker_port_range()
    else:  # the caller chose the range, which a run without workers keeps
        assert "PYTEST_XDIST_WORKER" not in os.environ and port_range() is not None


def test_a_worker_chooses_its_own_block_and_a_single_process_keeps_the_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID", PORT_RANGE_AUTO_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MPCNET_PORT_RANGE", "30000-30010")
    choose_port_range()  # the caller's, one process
    assert os.environ["MPCNET_PORT_RANGE"] == "30000-30010" and PORT_RANGE_AUTO_ENV not in os.environ
    monkeypatch.delenv("MPCNET_PORT_RANGE")
    choose_port_range()  # the controller's (or a single process's) own
    controller = os.environ["MPCNET_PORT_RANGE"]
    assert os.environ[PORT_RANGE_AUTO_ENV] == "1"
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", "ab" * 16)
    blocks = []
    for w in ("gw0", "gw1"):
        monkeypatch.setenv("MPCNET_PORT_RANGE", controller)  # inherited from the controller
        monkeypatch.setenv(PORT_RANGE_AUTO_ENV, "1")
        monkeypatch.setenv("PYTEST_XDIST_WORKER", w)
        choose_port_range()
        blocks.append(port_range())
    assert blocks[0] != blocks[1] and blocks == [_range(monkeypatch, "gw0", 2, "ab" * 16), _range(monkeypatch, "gw1", 2, "ab" * 16)]


def _lock() -> dict[str, tuple[str, int]]:
    """requirements.lock as {normalized name: (version, number of hashes)}."""
    out: dict[str, tuple[str, int]] = {}
    name = ""
    for line in (TESTS.parent / "requirements.lock").read_text().splitlines():
        m = re.match(r"([A-Za-z0-9._-]+)==([^ ;\\]+)", line)
        if m:
            name = re.sub(r"[-_.]+", "-", m[1]).lower()
            out[name] = (m[2], 0)
        elif line.strip().startswith("--hash=sha256:") and name:
            assert re.fullmatch(r"\s*--hash=sha256:[0-9a-f]{64}( \\)?", line), line
            out[name] = (out[name][0], out[name][1] + 1)
    return out


def test_the_lock_file_pins_every_dependency_of_pyproject_with_hashes() -> None:
    """scripts/_venv.sh installs requirements.lock and then the project with --no-deps: a pin in
    pyproject.toml (or scripts/build-requirements.in) that the lock lacks would never be installed."""
    import tomllib

    project = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"]) + list(project["optional-dependencies"]["dev"])
    build = (TESTS.parent / "scripts" / "build-requirements.in").read_text().splitlines()
    wanted += [x for x in build if x.strip() and not x.startswith("#")]
    lock = _lock()
    for req in wanted:
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", req.strip())
        assert m, f"{req!r}: pin every direct dependency exactly (NAME==VERSION)"
        name = re.sub(r"[-_.]+", "-", m[1]).lower()
        assert lock.get(name, ("missing", 0))[0] == m[2], f"{req}: requirements.lock has {lock.get(name)}; run scripts/lock"
    assert lock and all(n >= 1 for _, n in lock.values()), {k: v for k, v in lock.items() if v[1] < 1}
