"""Issue 14 (review): ServedWindows against SQL under random transactions, rollbacks, another
connection's commits and since values jumping both ways by more than SLACK_MS."""

import random
import sqlite3
from pathlib import Path

from mpc_node.served_window import SLACK_MS, ServedWindows, sql_count

KEYS = [b"a" * 32, b"b" * 32]


def _db(path: Path) -> sqlite3.Connection:
    c = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE IF NOT EXISTS requests (request_id TEXT PRIMARY KEY, key_id BLOB, steady_ms INTEGER)")
    return c


def test_random_against_sql(tmp_path: Path) -> None:
    rng = random.Random(14)  # noqa: S311 -- a reproducible test schedule, not a secret
    path = tmp_path / "r.db"
    c, other = _db(path), _db(path)
    w = ServedWindows()
    n = 0
    base = 10_000_000
    for step in range(4000):
        op = rng.random()
        since = base + rng.choice([-3, -1, 0, 1, 2, 5]) * SLACK_MS + rng.randint(-2000, 2000)
        key = rng.choice(KEYS)
        if op < 0.5:  # a tracked write: some inserts, counts inside, commit or rollback
            c.execute("BEGIN IMMEDIATE")
            for _ in range(rng.randint(1, 3)):
                t = since + rng.randint(-SLACK_MS, 2 * SLACK_MS)
                k = rng.choice(KEYS)
                n += 1
                c.execute("INSERT INTO requests VALUES (?, ?, ?)", (f"r{n}", k, t))
                w.noted(k, t)
                s2 = since + rng.randint(-3 * SLACK_MS, 3 * SLACK_MS)
                assert w.count(c, k, s2) == sql_count(c, k, s2), step
            if rng.random() < 0.3:
                c.execute("ROLLBACK")
                w.rolled_back()
            else:
                c.execute("COMMIT")
                w.committed()
        elif op < 0.55:  # another connection
            n += 1
            other.execute("INSERT INTO requests VALUES (?, ?, ?)", (f"r{n}", key, since + 5))
        elif op < 0.6:
            base += rng.choice([-1, 1]) * rng.randint(0, 5) * SLACK_MS  # the clock steps
        else:
            assert w.count(c, key, since) == sql_count(c, key, since), step
        base += rng.randint(0, 500)
