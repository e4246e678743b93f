"""Review of issue 14's audit outbox on real processes: nodes SIGKILLed while signing requests
run concurrently. Whatever a node committed (a reservation, a released share) has its audit
entry in the node's hash-chained log exactly once after the restart, and nothing else does."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from mpcnet.client import MpcClient, SigningTeam

from .conftest import running_cluster
from .outbox_util import outbox_drained


@pytest.fixture(scope="module")
def kc(tmp_path_factory):
    with running_cluster(tmp_path_factory, "kill-load-2of3", 3, 2) as c:
        yield c


def _rows(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_nodes_killed_under_concurrent_signing_keep_each_committed_entry_once(kc) -> None:
    with MpcClient.from_cluster(kc.lay.dir, identity="admin1", timeout=120) as admin:
        key = admin.create_key("kill-load")
    done: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def load(w: int) -> None:
        with SigningTeam.from_cluster(kc.lay.dir, timeout=60) as team:
            j = 0
            while not stop.is_set() and j < 30:  # the key's policy allows 100 signatures per window
                j += 1
                try:
                    r = team.request(key.key_id, hashlib.sha256(f"load {w} {j} {os.urandom(8).hex()}".encode()).digest())
                    if r.state == "done":
                        done.append(r.request_id)
                except Exception as e:  # a killed node: the request fails or is retried
                    errors.append(getattr(getattr(e, "code", None), "name", type(e).__name__))
                    time.sleep(0.1)

    threads = [threading.Thread(target=load, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    rng = random.SystemRandom()
    try:
        for victim in ("node-1", "node-2", "node-1"):
            time.sleep(rng.uniform(1.0, 3.0))
            kc.kill(victim)  # SIGKILL mid-load, wherever its RPCs and its flusher were
            time.sleep(rng.uniform(0.0, 0.5))
            kc.start(victim)
            kc.wait_healthy([victim])
        time.sleep(2.0)
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    print(f"signed {len(done)}, failed {Counter(errors)}")
    assert done, errors  # some requests were signed while nodes were killed
    for i in (1, 2, 3):
        d = kc.lay.node_dir(i)
        assert outbox_drained(d), f"node-{i}: outbox not drained"
        audit = _rows(d / "audit.db", "SELECT action, request_id, outcome, details FROM audit ORDER BY seq")
        served = Counter((str(rid), int(a)) for rid, a in _rows(d / "node.db", "SELECT request_id, attempt FROM served_attempts"))
        granted = set((str(rid), int(a)) for rid, a in _rows(d / "node.db", "SELECT request_id, attempt FROM reservations"))
        released = Counter(
            (rid, int(json.loads(det)["attempt"])) for act, rid, out, det in audit if act == "sign-share" and out == "released"
        )
        reserved = Counter(
            (rid, int(json.loads(det)["attempt"])) for act, rid, out, det in audit if act == "sign-reserve" and out == "granted"
        )
        assert released == served, (i, released - served, served - released)  # each released share: its entry, once
        assert set(reserved) <= granted and set(reserved.values()) <= {1}, (i, set(reserved) - granted)
        events = [json.loads(det).get("event") for *_, det in audit]
        events = [e for e in events if e is not None]
        assert len(events) == len(set(events)), f"node-{i}: an entry appended twice"
