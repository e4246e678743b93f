"""Clocks and store health of a node, and the coordinator's skew measurement (unit level; the
real-process cases are in tests/integration/test_clock_and_store.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpc_node.clock import ENV, NodeClock
from mpcnet.common.clockskew import SkewSample, format_skew, measure

NOW_MS = 1_700_000_000_000


# --- the coordinator's measurement -----------------------------------------------------------


def test_skew_is_measured_against_the_midpoint_with_the_round_trip_as_error() -> None:
    s = measure(1_000_000, 1_000_040, 1_090_020)  # node 90 s ahead, 40 ms round trip
    assert s == SkewSample(90_000, 21)
    assert s.text() == "skew +90.0s (+-0.021s)"
    assert measure(1_000_000, 1_000_000, 640_000) == SkewSample(-360_000, 1)
    assert measure(1_000_000, 1_000_001, 1_000_000).skew_ms == 0  # -0.5 ms rounds toward zero
    with pytest.raises(ValueError):
        measure(1_000_001, 1_000_000, 1_000_000)
    assert format_skew(90_200) == "+90.2s" and format_skew(-360_000) == "-360.0s" and format_skew(0) == "+0.0s"
    assert format_skew(-40) == "+0.0s" and format_skew(-60) == "-0.1s"


def test_a_node_is_beyond_the_tolerance_only_beyond_the_error_bound() -> None:
    assert SkewSample(90_000, 10).beyond(30_000)
    assert SkewSample(-7_200_000, 10).beyond(30_000)
    assert not SkewSample(30_000, 0).beyond(30_000)
    assert not SkewSample(30_500, 600).beyond(30_000)  # a slow probe never condemns a node
    assert SkewSample(-30_500, 400).beyond(30_000)


# --- the node's clock --------------------------------------------------------------------------


def test_clock_offset_is_honoured_only_in_test_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "90.5")
    assert NodeClock.from_env(False) == NodeClock(0)
    shifted = NodeClock.from_env(True)
    assert shifted.offset_ms == 90_500
    assert abs(shifted.now_ms() - NodeClock().now_ms() - 90_500) < 1_000
    monkeypatch.setenv(ENV, "-360")
    assert NodeClock.from_env(True).offset_ms == -360_000
    for bad in ("soon", "nan", "inf", "1e12", "\uff19\uff10", "9_0", " 90", "+90", "90 ", "0x5a", ".5", "5."):
        monkeypatch.setenv(ENV, bad)
        with pytest.raises(ValueError, match=ENV):
            NodeClock.from_env(True)
    monkeypatch.delenv(ENV)
    assert NodeClock.from_env(True) == NodeClock(0)


def _node_config(tmp_path: Path, **extra: object) -> Path:
    from mpcnet.cluster.launcher import prepare

    lay = prepare(tmp_path / "c", 2, 2, scrypt_n=2**10)
    path = lay.node_config(1)
    doc = json.loads(path.read_text())
    doc.update(extra)
    path.write_text(json.dumps(doc))
    return path


def test_node_config_clock_tolerance(tmp_path: Path) -> None:
    from mpc_node.config import load_node_config
    from mpcnet.common.config import ConfigError

    assert load_node_config(_node_config(tmp_path)).clock_tolerance_s == 5.0
    assert load_node_config(_node_config(tmp_path, clock_tolerance_s=0)).clock_tolerance_s == 0.0
    for bad in (-1, 301, "5", True):
        with pytest.raises(ConfigError, match="clock_tolerance_s"):
            load_node_config(_node_config(tmp_path, clock_tolerance_s=bad))


def test_store_probe_write_fails_while_a_fault_is_injected_and_recovers(tmp_path: Path) -> None:
    from mpc_node.storage import NodeStore, StoreError

    with NodeStore.open(tmp_path / "node.db", b"passphrase", 1, scrypt_n=2**10) as store:
        store.probe_write(NOW_MS)
        fault: list[str] = ["disk I/O error (injected)"]
        store.write_fault = lambda: fault[0] if fault else None
        with pytest.raises(StoreError, match="disk I/O error"):
            store.probe_write(NOW_MS + 1)
        with pytest.raises(StoreError, match="disk I/O error"):
            store.add_ban(b"\x01" * 32, 2, "x")
        assert store.banned(b"\x01" * 32) == frozenset()  # reads still work, nothing was written
        fault.clear()
        store.probe_write(NOW_MS + 2)


def test_coordinator_config_max_clock_skew(tmp_path: Path) -> None:
    from coordinator.config import load_coordinator_config
    from mpcnet.cluster.launcher import prepare
    from mpcnet.common.config import ConfigError

    lay = prepare(tmp_path / "c", 2, 2, scrypt_n=2**10)
    path = lay.coordinator_config
    original = json.loads(path.read_text())
    assert load_coordinator_config(path).max_clock_skew_s == 30.0
    for value, ok in ((0.5, True), (500_000, True), (0, False), (-3, False), (8 * 86400, False), ("30", False)):
        path.write_text(json.dumps({**original, "max_clock_skew_s": value}))
        if ok:
            assert load_coordinator_config(path).max_clock_skew_s == value
        else:
            with pytest.raises(ConfigError, match="max_clock_skew_s"):
                load_coordinator_config(path)


def test_coordinator_judges_expiry_by_its_own_clock() -> None:
    """A node's ``expired`` refusal is the node's fault only while the request is live here."""
    import time

    from coordinator.service import _live
    from governance.approval import ApprovalBundle
    from tests.governance.gov_util import approve, request

    now = time.time_ns() // 1_000_000
    live = request(created_at_ms=now - 1_000, expires_at_ms=now + 60_000)
    assert _live(ApprovalBundle(live, approve(live, "alice", "bert")).to_bytes(), now)
    gone = request(created_at_ms=now - 61_000, expires_at_ms=now - 1_000)
    assert not _live(ApprovalBundle(gone, approve(gone, "alice", "bert")).to_bytes(), now)
    assert not _live(b"not a bundle", now)
    # judged at the time given (the coordinator's expiry clock), not the wall clock read inside
    assert not _live(ApprovalBundle(live, approve(live, "alice", "bert")).to_bytes(), now + 61_000)
