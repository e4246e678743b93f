"""Issue 11 crash tests, in-process parts: the test-mode crash points of the node
(:meth:`mpc_node.faults.FaultInjector.at`) and of the coordinator (:mod:`coordinator.faults`) can
only crash or delay and are off outside test mode; and the regression found on real processes
(tests/integration/test_keyop_crashes.py): a coordinator that restarted mid-session discards the
session, and the node must then accept the operation's retry instead of refusing it as a second
live reshare session of the key until the stale one times out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator import faults as coordinator_faults
from coordinator.config import load_coordinator_config
from governance.keyop import KeyOpKind
from mpc_node import faults as node_faults
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .keyops_util import close, dkg, operation, run, services

N, T = 3, 2


class Exited(Exception):
    pass


def _exit(code: int) -> None:
    raise Exited(code)


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("crashpoints"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = services(lay)
    yield out
    close(out)


# --- the regression: a discarded session is over on the node -----------------------------------
def test_a_session_discarded_after_a_coordinator_restart_does_not_block_the_retry(lay: Layout, svcs: dict[int, NodeService]) -> None:
    key = dkg(svcs, T)
    op = operation(lay, svcs[1].gov.governance_root, key, kind=KeyOpKind.REFRESH, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=2)
    params = node_pb2.ReshareParams(operation=op.to_bytes(), dealers=[1, 2, 3], key_label=b"keyops")
    stale = os.urandom(32)
    for s in svcs.values():  # round 1 answered, then the coordinator died: the sessions stay live
        assert s.StartSession(node_pb2.StartSessionRequest(session_id=stale, reshare=params), None).round == 1
    with pytest.raises(RpcError) as ei:
        svcs[1].StartSession(node_pb2.StartSessionRequest(session_id=os.urandom(32), reshare=params), None)
    assert ei.value.message.startswith("reshare.operation.key_id:") and "already runs" in ei.value.message
    for s in svcs.values():  # the restarted coordinator's recovery: nothing to keep, discard
        assert not s.DiscardEpoch(node_pb2.DiscardEpochRequest(key_id=key.key_id, session_id=stale), None).discarded
    # the operation proposed again (a new operation of the same old epoch) runs to the end
    op2 = operation(lay, svcs[1].gov.governance_root, key, kind=KeyOpKind.REFRESH, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=2)
    sid = os.urandom(32)
    res = run(svcs, sid, [1, 2, 3], reshare=node_pb2.ReshareParams(operation=op2.to_bytes(), dealers=[1, 2, 3], key_label=b"keyops"))
    assert all(r.finished and r.reshare_result.receipt for r in res.values())
    # the stale session is gone: a late step of it is refused as unknown, never run
    with pytest.raises(RpcError):
        svcs[2].Step(node_pb2.StepRequest(session_id=stale, round=1), None)


def test_discarding_another_keys_session_id_leaves_a_live_session_alone(lay: Layout, svcs: dict[int, NodeService]) -> None:
    key = dkg(svcs, T)
    other = dkg(svcs, T)
    op = operation(lay, svcs[1].gov.governance_root, key, kind=KeyOpKind.REFRESH, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=2)
    sid = os.urandom(32)
    params = node_pb2.ReshareParams(operation=op.to_bytes(), dealers=[1, 2, 3], key_label=b"keyops")
    first = {i: s.StartSession(node_pb2.StartSessionRequest(session_id=sid, reshare=params), None) for i, s in svcs.items()}
    assert all(r.round == 1 for r in first.values())
    svcs[1].DiscardEpoch(node_pb2.DiscardEpochRequest(key_id=other.key_id, session_id=sid), None)
    with pytest.raises(RpcError) as ei:  # still live on node 1
        svcs[1].StartSession(node_pb2.StartSessionRequest(session_id=os.urandom(32), reshare=params), None)
    assert "already runs" in ei.value.message
    for s in svcs.values():
        s.DiscardEpoch(node_pb2.DiscardEpochRequest(key_id=key.key_id, session_id=sid), None)


# --- the node's step points ----------------------------------------------------------------------
def _injector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doc: Any, enabled: bool = True) -> node_faults.FaultInjector:
    f = tmp_path / "fault.json"
    f.write_text(json.dumps(doc))
    monkeypatch.setenv(node_faults.ENV, str(f))
    monkeypatch.setattr(node_faults.os, "_exit", _exit)
    return node_faults.FaultInjector(enabled)


def test_node_step_point_crashes_once_and_only_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inj = _injector(tmp_path, monkeypatch, {"action": "crash", "point": "epoch-committed"})
    inj.at("reshare-stored")  # another point: nothing
    assert inj.check("reshare", 1) is None  # not a round fault
    with pytest.raises(Exited) as ei:
        inj.at("epoch-committed")
    assert ei.value.args == (137,)
    assert not (tmp_path / "fault.json").exists()  # once: the restarted node runs normally
    inj.at("epoch-committed")


@pytest.mark.parametrize("action", ["tamper-payload", "tamper-signature", "store-unwritable", "exec", None])
def test_node_step_points_only_crash_or_delay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: Any) -> None:
    inj = _injector(tmp_path, monkeypatch, {"action": action, "point": "reshare-stored"})
    inj.at("reshare-stored")  # ignored: no exit, no exception
    assert (tmp_path / "fault.json").exists()


def test_node_step_points_are_off_outside_test_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inj = _injector(tmp_path, monkeypatch, {"action": "crash", "point": "reshare-stored"}, enabled=False)
    inj.at("reshare-stored")
    assert inj.path is None


def test_node_step_point_delay_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    inj = _injector(tmp_path, monkeypatch, {"action": "delay", "point": "reshare-stored", "seconds": 1e9})
    monkeypatch.setattr(node_faults.time, "sleep", slept.append)
    inj.at("reshare-stored")
    assert slept == [node_faults.MAX_DELAY_S]


# --- the coordinator's points --------------------------------------------------------------------
def _hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doc: Any, test_mode: bool = True) -> Any:
    f = tmp_path / "coordinator.json"
    f.write_text(json.dumps(doc))
    monkeypatch.setenv(coordinator_faults.ENV, str(f))
    monkeypatch.setattr(coordinator_faults.os, "_exit", _exit)
    return coordinator_faults.fault_hook(test_mode)


@pytest.mark.parametrize("point", ["recorded", "round-1", "round-3", "receipts", "decided", "pushed"])
def test_coordinator_point_crashes_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str) -> None:
    hook = _hook(tmp_path, monkeypatch, {"action": "crash", "point": point})
    hook("elsewhere")
    with pytest.raises(Exited):
        hook(point)
    hook(point)  # once


@pytest.mark.parametrize("action", ["tamper", "exit", "store-unwritable", 7])
def test_coordinator_points_only_crash_or_delay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: Any) -> None:
    hook = _hook(tmp_path, monkeypatch, {"action": action, "point": "decided"})
    hook("decided")


def test_coordinator_points_are_off_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lay: Layout) -> None:
    assert _hook(tmp_path, monkeypatch, {"action": "crash", "point": "decided"}, test_mode=False) is None
    monkeypatch.delenv(coordinator_faults.ENV)
    assert coordinator_faults.fault_hook(True) is None
    doc = json.loads(lay.coordinator_config.read_text())
    assert doc["test_mode"] is True and load_coordinator_config(lay.coordinator_config).test_mode
    del doc["test_mode"]
    plain = tmp_path / "coordinator-config.json"
    for k in ("db", "keystore", "passphrase_file", "audit_db"):  # relative to the config file
        doc[k] = str(lay.coordinator_config.parent / doc[k])
    plain.write_text(json.dumps(doc))
    assert load_coordinator_config(plain).test_mode is False
