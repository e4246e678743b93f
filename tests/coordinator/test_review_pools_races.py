"""Review of issue 14 (attacker): the coordinator's pool store under concurrency. Many requests
reach their quorum at once (R10 assignments and the signing thread's own), while housekeeping
discards and the refiller stores new batches: a presig_id goes to at most one (request,
attempt), a request holds at most one assignment at a time and never more than
MAX_SIGN_ATTEMPTS attempt numbers, and every assignment has its own attempt number."""

from __future__ import annotations

import os
import random
import threading
from dataclasses import replace
from pathlib import Path

from governance.reservation import MAX_SIGN_ATTEMPTS

from .pool_util import cluster


def test_assignments_discards_and_refills_race_without_a_double_assignment(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    sets = [(1, 2), (1, 3), (2, 3)]
    for s in sets:
        c.presign(s, 6, seed=bytes(s))
    template = c.db.ready_presigs()[0]
    rids = [f"req-{i}" for i in range(24)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def assigner(mine: list[str]) -> None:
        rnd = random.Random(os.urandom(8))  # noqa: S311 (test schedule, not crypto)
        try:
            for _ in range(40):
                rid = rnd.choice(mine)
                a = c.db.assign_presig(rid, c.key.key_id, 0, (), rnd.sample(sets, 3), MAX_SIGN_ATTEMPTS, 1)
                if a is not None and rnd.random() < 0.5:  # the attempt failed: discarded, the request may take another
                    c.db.discard_presigs_in([a.presig_id], "failed", 1, ("assigned",))
        except BaseException as e:
            errors.append(e)

    def housekeeper() -> None:
        rnd = random.Random(os.urandom(8))  # noqa: S311 (test schedule, not crypto)
        try:
            while not stop.is_set():
                ready = c.db.ready_presigs()
                if ready:
                    c.db.discard_presigs_in([r.presig_id for r in rnd.sample(ready, min(2, len(ready)))], "epoch", 1, ("ready",))
                new = replace(template, presig_id=os.urandom(32), signers=rnd.choice(sets))  # the refiller stores a batch
                c.db.add_ready_presigs([new], 1)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=assigner, args=(rids[i::4],)) for i in range(4)] + [threading.Thread(target=housekeeper)]
    for t in threads:
        t.start()
    for t in threads[:-1]:
        t.join()
    stop.set()
    threads[-1].join()
    assert errors == []
    rows = c.db._query("SELECT presig_id, request_id, attempt, state FROM presigs WHERE request_id != ''")
    by_attempt = {(r[1], r[2]) for r in rows}
    assert len(by_attempt) == len(rows)  # each (request, attempt) at most one presignature
    for rid in rids:
        mine = [r for r in rows if r[1] == rid]
        assert sum(r[3] == "assigned" for r in mine) <= 1
        assert len(mine) <= MAX_SIGN_ATTEMPTS and c.db.sign_attempts_taken(rid) == len(mine)
        assert sorted(r[2] for r in mine) == list(range(1, len(mine) + 1))
