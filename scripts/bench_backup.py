"""Backup figures (issue 12): bundle size, one node's part (split m-of-k, k age encryptions,
Ed25519 signature) and the public check of a whole bundle, for a few (t, n, m, k).

Uses the fixed-key test world of ``tests/backup/bundle_util.py`` (a real DKG). Run from the
repository root: ``PYTHONPATH=. .venv/bin/python scripts/bench_backup.py``.
"""

from __future__ import annotations

import statistics
import time

from crypto_core.rng import SYSTEM_RNG
from mpcnet.common.backup import make_part
from mpcnet.common.bundle import verify_bundle
from tests.backup import bundle_util as bu

CASES = ((2, (1, 2, 4), 3, 2), (3, (1, 2, 3, 4, 5), 3, 2), (3, (1, 2, 3, 4, 5), 5, 3))
RUNS = 9


def main() -> None:
    for t, committee, k, m in CASES:
        w = bu.world(t=t, committee=committee, k=k, m=m)
        node = committee[0]
        part_s: list[float] = []
        for _ in range(RUNS):
            a = time.perf_counter()
            make_part(w.shares[1], node=node, roster_version=bu.roster_version_of(node), governance_root=bu.ROOT,
                      config_change=w.config, key=w.key, identity=bu.NODE_IDENTITY[node], now_ms=bu.CREATED_MS - 1000,
                      rng=SYSTEM_RNG)
            part_s.append(time.perf_counter() - a)
        verify_s: list[float] = []
        for _ in range(RUNS):
            a = time.perf_counter()
            verify_bundle(w.bundle, bu.ADMINS)
            verify_s.append(time.perf_counter() - a)
        print(f"t={t} n={len(committee)} m={m} k={k}: bundle {len(w.bundle.to_file())} bytes; "
              f"one node's part {statistics.median(part_s) * 1000:.1f} ms; "
              f"public check of the bundle {statistics.median(verify_s) * 1000:.1f} ms (medians of {RUNS})")


if __name__ == "__main__":
    main()
