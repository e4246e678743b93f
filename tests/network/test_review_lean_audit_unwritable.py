"""Review of issue 14's lean path: a node whose audit log cannot be written must not go on
signing.

Before the audit outbox, the sign-start entry was appended to the log before any round was
answered, so a node with an unwritable log (its disk full or read-only) refused every signing
session (UNAVAILABLE). With the outbox the entries are committed to the store and the flusher's
failure was only logged: the node kept releasing signature shares with nothing reaching the
hash-chained log, and the outbox grew without bound. Now a failing flush stops new signing
sessions (UNAVAILABLE naming the audit log) until a flush succeeds again; nothing queued is
lost, and every entry reaches the log once when it can be written again."""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from governance.errors import GovernanceError
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .test_bans import N, T, _params, _run, _service


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("unwritable"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = {i: _service(lay, i) for i in range(1, N + 1)}
    yield out
    for s in out.values():
        s.stop()
        s.store.close()
        s.audit.close()


@pytest.fixture(scope="module")
def key(svcs: dict[int, NodeService]) -> node_pb2.DkgResult:
    res = _run(svcs, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"unwritable"))
    k: node_pb2.DkgResult = res[1].dkg_result
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), None)
    return k


def _wait(cond: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_a_node_whose_audit_log_is_unwritable_refuses_new_signing_sessions(
    lay: Layout, svcs: dict[int, NodeService], key: node_pb2.DkgResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = svcs[1]
    real = node.audit._write

    @contextlib.contextmanager
    def full() -> Iterator[Any]:
        raise GovernanceError("database", "database or disk is full")
        yield  # pragma: no cover

    monkeypatch.setattr(node.audit, "_write", full)
    first = _params(lay, key, (1, 2))
    res = _run(svcs, os.urandom(32), [1, 2], sign=first)  # started before the flusher knew: it may finish
    assert all(r.finished for r in res.values())
    time.sleep(0.3)  # the flusher (woken by the entries, 50 ms linger) tried, and failed
    _wait(lambda: getattr(node.outbox, "problem", None) != "")
    refused = 0
    rids = [first.request_id]
    for _ in range(3):
        params = _params(lay, key, (1, 2))
        try:
            _run(svcs, os.urandom(32), [1, 2], sign=params)
        except RpcError as e:
            assert e.code.name == "UNAVAILABLE" and "audit log" in e.message, e
            refused += 1
        else:
            rids.append(params.request_id)
    assert refused == 3  # no signature share leaves a node that cannot write its audit log
    # the log can be written again: the backstop pass appends every queued entry once and
    # the node signs again
    monkeypatch.setattr(node.audit, "_write", real)
    _wait(lambda: node.outbox.problem == "")
    params = _params(lay, key, (1, 2))
    res = _run(svcs, os.urandom(32), [1, 2], sign=params)
    assert all(r.finished for r in res.values())
    rids.append(params.request_id)
    entries = node.audit.entries()
    for rid in rids:
        acts = Counter(e.action for e in entries if e.request_id == rid)
        assert acts == Counter({"sign-start": 1, "sign-reserve": 1, "sign-share": 1}), (rid, acts)
    events = [e.details["event"] for e in entries if "event" in e.details]
    assert len(events) == len(set(events))
