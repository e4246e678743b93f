#!/usr/bin/env python3
"""The coordinator's time from the quorum approval to the start of signing, in-process.

Drives :class:`coordinator.requests.SignRequests` on real stores (SQLite WAL, synchronous=FULL,
in a temporary directory) with the harness of ``tests/coordinator/signreq_util.py``: per request
a submit and a first approval, then the timed quorum approval, from the ``DecideSignRequest``
call to the moment the signer is called (what the coordinator does before round 1: the decision's
checks and transaction, the audit flush if it is on the path, reads, the tally). No nodes, no
gRPC. Prints the median, p90 and max in milliseconds.

    .venv/bin/python scripts/bench_quorum_path.py [--requests 60]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.coordinator.signreq_util import Harness


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=60)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        h = Harness(Path(d))
        flusher = getattr(h.sr, "flusher", None)
        if flusher is not None:
            flusher.start()  # as the running coordinator does (SignRequests.resume)
        times = []
        try:
            for i in range(args.requests + 5):
                sreq = h.submit(f"bench-{i}")
                h.decide(sreq, "alice")
                t0 = time.perf_counter()
                h.decide(sreq, "bert")
                if i >= 5:  # warm-up
                    times.append((h.signed_at[sreq.request_id] - t0) * 1000)
        finally:
            h.close()
    times.sort()
    p90 = times[int(0.9 * (len(times) - 1))]
    print(f"quorum -> signing start: median {statistics.median(times):.2f} ms, p90 {p90:.2f} ms, max {times[-1]:.2f} ms "
          f"({len(times)} requests, background flusher {'on' if flusher is not None else 'absent (synchronous flush)'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
