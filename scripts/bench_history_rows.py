#!/usr/bin/env python3
"""What the coordinator's periodic database work costs as the history grows (issue 14).

In-process, on a fresh coordinator database in a temporary directory: ``--live`` ready
presignatures (three signer sets of one key) and fresh FROST nonce commitments (three nodes),
then for each ``--history`` figure N: N ended requests, N history presignatures (9 in 10 used,
1 in 10 discarded) and N history nonce commitments (assigned or discarded), added to the previous
ones. Per figure, the median (and min/max) wall time in milliseconds of one call of:

- the presignature refiller pass's reads (``pool_counts`` + ``list_keys('active')``, at least 4
  per second);
- the once-a-second housekeeping's reads (``list_keys`` + ``ready_presigs`` +
  ``presigs_of_ended_requests``);
- the FROST nonce sync's ``held()`` (every health probe) and the refill's ``fresh_nonce_counts``.

``PYTHONPATH=<other tree>`` runs it against another tree's code (A/B): the rows are written with plain
SQL, so any schema version since step 8 works.

    .venv/bin/python scripts/bench_history_rows.py --history 300,3000,30000
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # appended: a PYTHONPATH naming another tree (an A/B run) comes first

from coordinator.db import CoordinatorDb  # noqa: E402
from coordinator.frost_nonce_sync import NonceSync  # noqa: E402

KEY = hashlib.sha256(b"bench history key").digest()
POINT = bytes([2]) + bytes(32)
SIGNER_SETS = ("1,2", "1,3", "2,3")


def _id(tag: str, i: int) -> bytes:
    return hashlib.sha256(f"{tag}-{i}".encode()).digest()


def add_live(db: CoordinatorDb, n: int) -> None:
    """``n`` ready presignatures and ``n`` fresh nonce commitments (created_ms 10**9 + i)."""
    with db._tx() as c:
        c.executemany(
            "INSERT INTO presigs (presig_id, key_id, epoch, path, signers, big_r, public_key, state, created_ms, updated_ms)"
            " VALUES (?, ?, 0, '', ?, ?, ?, 'ready', ?, 0)",
            [(_id("ready", i), KEY, SIGNER_SETS[i % 3], POINT, POINT, 10**9 + i) for i in range(n)],
        )
        c.executemany(
            "INSERT INTO frost_nonces (nonce_id, key_id, epoch, node, hiding, binding, state, created_ms, updated_ms)"
            " VALUES (?, ?, 0, ?, ?, ?, 'fresh', ?, 0)",
            [(_id("fresh", i), KEY, 1 + i % 3, POINT, POINT, 10**9 + i) for i in range(n)],
        )


def add_history(db: CoordinatorDb, start: int, stop: int) -> None:
    """History rows ``start`` .. ``stop - 1``: an ended request each, with a used (or, 1 in 10,
    discarded) presignature and an assigned (or discarded) nonce commitment."""
    ids = range(start, stop)
    with db._tx() as c:
        c.executemany(
            "INSERT INTO sign_requests (request_id, key_id, digest, requester, request, scope, state, created_ms, expires_ms,"
            " updated_ms) VALUES (?, ?, ?, 'bench', x'', x'', 'done', 1, 2, 1)",
            [(f"h{i}", KEY, bytes(32)) for i in ids],
        )
        c.executemany(
            "INSERT INTO presigs (presig_id, key_id, epoch, path, signers, big_r, public_key, state, request_id, attempt,"
            " created_ms, updated_ms) VALUES (?, ?, 0, '', ?, ?, ?, ?, ?, 1, ?, 0)",
            [(_id("old", i), KEY, SIGNER_SETS[i % 3], POINT, POINT, "discarded" if i % 10 == 0 else "used",
              "" if i % 10 == 0 else f"h{i}", i) for i in ids],
        )
        c.executemany(
            "INSERT INTO frost_nonces (nonce_id, key_id, epoch, node, hiding, binding, state, request_id, attempt, created_ms,"
            " updated_ms) VALUES (?, ?, 0, ?, ?, ?, ?, ?, 1, ?, 0)",
            [(_id("spent", i), KEY, 1 + i % 3, POINT, POINT, "discarded" if i % 10 == 0 else "assigned",
              "" if i % 10 == 0 else f"h{i}", i) for i in ids],
        )


def cases(db: CoordinatorDb) -> dict[str, Callable[[], object]]:
    """The measured calls, by name."""
    sync = NonceSync(db, dict)
    return {
        "refiller pass reads": lambda: (db.pool_counts(), db.list_keys("active")),
        "housekeeping reads": lambda: (db.list_keys(), db.ready_presigs(), db.presigs_of_ended_requests()),
        "nonce sync held()": sync.held,
        "fresh_nonce_counts": lambda: db.fresh_nonce_counts(KEY, 0),
    }


def measure(call: Callable[[], object], number: int, repeat: int) -> tuple[float, float, float]:
    """(median, min, max) over ``repeat`` batches of the mean ms per call of ``number`` calls."""
    per = [t / number * 1e3 for t in timeit.repeat(call, number=number, repeat=repeat)]
    return statistics.median(per), min(per), max(per)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--history", default="300,3000,30000", help="history rows, comma-separated, increasing")
    ap.add_argument("--live", type=int, default=96, help="ready presignatures and fresh nonces (default 96)")
    ap.add_argument("--number", type=int, default=20, help="calls per batch (default 20)")
    ap.add_argument("--repeat", type=int, default=7, help="batches (default 7)")
    args = ap.parse_args(argv)
    figures = [int(x) for x in args.history.split(",") if x]
    if figures != sorted(figures) or any(n < 0 for n in figures):
        ap.error("--history: non-negative and increasing")
    with tempfile.TemporaryDirectory(prefix="mpcnet-bench-history-") as d:
        db = CoordinatorDb(Path(d) / "coordinator.db")
        try:
            add_live(db, args.live)
            have = 0
            for n in figures:
                add_history(db, have, n)
                have = n
                for name, call in cases(db).items():
                    med, lo, hi = measure(call, args.number, args.repeat)
                    print(f"history {n:>7}  {name:<22} median {med:8.3f} ms  (min {lo:.3f}, max {hi:.3f})")
        finally:
            db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
