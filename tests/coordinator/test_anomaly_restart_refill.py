"""A coordinator restart in the middle of a burst of requests does not split its window (p16).

The anomaly windows were in memory only, on the process's monotonic clock: a restart emptied them,
so a requester's burst made half before and half after a restart stayed under
``requester_min_count`` on both sides and ``requester_rate`` never fired. The service now runs the
windows on the store's steady clock (which continues across restarts) and refills
``requester_rate`` at start from the stored requests' ``created_steady_ms``."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.anomaly import AnomalyConfig
from coordinator.config import load_coordinator_config
from coordinator.db import KeyRecord
from coordinator.service import CoordinatorService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.wire.mpc.v1 import coordinator_pb2 as cpb

IDENTITY = Ed25519PrivateKey.generate()  # one coordinator identity across its restarts
WHO = "requester1"  # the only requester the layout's policy allows
KEY = KeyRecord(bytes([7]) * 32, "k7", b"\x02" + bytes([7]) * 32, b"", 2, 3, "active", 0, "kg-7")


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("anomaly-refill"), 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


def _service(lay: Layout, tmp: Path, **anomaly: Any) -> CoordinatorService:
    cfg = load_coordinator_config(lay.coordinator_config)
    cfg = dataclasses.replace(
        cfg, db=tmp / "c.db", audit_db=tmp / "a.db", anomaly=AnomalyConfig(requester_min_count=3, window_s=600, **anomaly),
    )
    return CoordinatorService(cfg, IDENTITY)


def _submit(s: CoordinatorService, rid: str, who: str) -> list[Any]:
    found: list[Any] = []
    real = s.anomaly.request_created

    def spy(requester: str, key_id: bytes) -> list[Any]:
        out = real(requester, key_id)
        found.extend(out)
        return out

    s.requests.anomaly.request_created = spy  # type: ignore[method-assign]
    req = cpb.SubmitSignRequestRequest(key_id=KEY.key_id, digest=hashlib.sha256(rid.encode()).digest(), request_id=rid)
    s.requests.submit(req, who, s.db.get_key)
    return found


def _anomaly_entries(s: CoordinatorService) -> list[dict[str, Any]]:
    return [dict(e.details) for e in s.audit.entries() if e.action == "anomaly" and e.outcome == "detected"]


def test_a_burst_split_by_a_restart_still_alerts(lay: Layout, tmp_path: Path) -> None:
    s = _service(lay, tmp_path)
    try:
        s.db.add_key(KEY)
        assert _submit(s, "b1", WHO) == [] and _submit(s, "b2", WHO) == []
    finally:
        s.stop()
    s = _service(lay, tmp_path)  # restarted over the same files, in the same window
    try:
        assert _submit(s, "b3", WHO) == []  # 3: not above requester_min_count
        [hit] = _submit(s, "b4", WHO)  # 4 in the window, 2 of them from before the restart
        assert (hit.rule, hit.subject, hit.observed) == ("requester_rate", WHO, 4.0)
        assert _submit(s, "b5", WHO) == []  # reported once per window
        assert [(d["rule"], d.get("subject")) for d in _anomaly_entries(s)] == [("requester_rate", WHO)]
    finally:
        s.stop()


def test_without_the_refill_the_split_burst_went_unseen(lay: Layout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault itself: with the refill disabled the same split burst does not alert."""
    monkeypatch.setattr("coordinator.anomaly_hook.AnomalyMonitor.refill_requests", lambda self, since: 0)
    s = _service(lay, tmp_path)
    try:
        s.db.add_key(KEY)
        _submit(s, "b1", WHO)
        _submit(s, "b2", WHO)
    finally:
        s.stop()
    s = _service(lay, tmp_path)
    try:
        assert _submit(s, "b3", WHO) == [] and _submit(s, "b4", WHO) == []
    finally:
        s.stop()


def test_requests_older_than_the_horizon_are_not_refilled(lay: Layout, tmp_path: Path) -> None:
    s = _service(lay, tmp_path)
    try:
        s.db.add_key(KEY)
        for i in range(3):
            _submit(s, f"o{i}", WHO)
        horizon = s.cfg.anomaly.window_ms * (s.cfg.anomaly.baseline_windows + 1)
        floor = s.db.steady.now_ms() + 1  # as if the horizon had passed since: none is counted
        assert s.db.requests_created_since(floor, 100) == []
        assert [r for r, _ in s.db.requests_created_since(floor - horizon - 10_000, 100)] == [WHO] * 3
    finally:
        s.stop()
