"""Issue 14 on in-process nodes: the durable writes a signing makes on the request path (the
RPC threads), and what the audit log holds afterwards.

Before: a signer made 6 commits (store probe, sign-start entry, reservation, sign-reserve entry,
tombstone, sign-share entry), a non-signer 2. Now each entry is committed with its state change
(the audit outbox) and the probe is throttled: a signer makes 3 store commits and no audit-log
commit on the request path, a non-signer 1; the entries reach the log from the flusher thread."""

from __future__ import annotations

import contextlib
import os
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.wire.mpc.v1 import node_pb2

from .test_bans import N, T, _params, _run, _service

FLUSHER = "audit-outbox"  # the flusher thread's name (mpc_node/audit_outbox.py)


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("lean"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


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
    res = _run(svcs, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"lean"))
    k: node_pb2.DkgResult = res[1].dkg_result
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), None)
    return k


class _Writes:
    """Counts write transactions of each node's store and audit log made outside the flusher."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[int, str]] = Counter()
        self.probes: Counter[int] = Counter()
        self._lock = threading.Lock()

    def wrap(self, i: int, what: str, obj: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        real = obj._write

        @contextlib.contextmanager
        def counted(**kw: Any) -> Iterator[Any]:  # kw: the store's own options (tracked=)
            if threading.current_thread().name != FLUSHER:
                with self._lock:
                    self.counts[(i, what)] += 1
            with real(**kw) as c:
                yield c

        monkeypatch.setattr(obj, "_write", counted)


def test_a_signing_commits_each_entry_with_its_state_change(
    lay: Layout, svcs: dict[int, NodeService], key: node_pb2.DkgResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(svcs, os.urandom(32), [1, 2], sign=_params(lay, key, (1, 2)))  # warm: keys loaded, probes done
    w = _Writes()
    for i, s in svcs.items():
        w.wrap(i, "store", s.store, monkeypatch)
        w.wrap(i, "audit", s.audit, monkeypatch)
        real_probe = s.store.probe_write

        def probe(now_ms: int, i: int = i, real_probe: Any = real_probe) -> None:
            w.probes[i] += 1
            real_probe(now_ms)

        monkeypatch.setattr(s.store, "probe_write", probe)
    params = _params(lay, key, (1, 2))
    res = _run(svcs, os.urandom(32), [1, 2], sign=params)
    assert all(r.finished for r in res.values())
    # on the request path: sign-start (with the session), reservation and tombstone (with their
    # entries) on a signer; the reservation on the non-signer; no audit-log commit, no probe
    assert {i: (w.counts[(i, "store")], w.counts[(i, "audit")]) for i in svcs} == {1: (3, 0), 2: (3, 0), 3: (1, 0)}
    assert sum(w.probes.values()) == 0
    for i, s in svcs.items():
        acts = Counter(e.action for e in s.audit.entries() if e.request_id == params.request_id)  # a read flushes first
        want = {"sign-start": 1, "sign-reserve": 1, "sign-share": 1} if i in (1, 2) else {"sign-reserve": 1}
        assert acts == Counter(want), (i, acts)
        released = [e for e in s.audit.entries() if e.request_id == params.request_id and e.action == "sign-share"]
        assert all(e.outcome == "released" and e.details["event"] for e in released)
