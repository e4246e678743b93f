#!/usr/bin/env python3
"""Where the time of a one-round signing goes: the medians of the spans ``MPCNET_TRACE_SIGN`` wrote.

Run a benchmark with the environment variable set to an existing directory (every process of
the cluster inherits it; :mod:`mpcnet.common.sign_trace`), then summarise::

    mkdir -p /tmp/trace && MPCNET_TRACE_SIGN=/tmp/trace scripts/bench_cluster.py --start 2/3 --warm \\
        --signatures 60 --concurrency 1
    scripts/trace_sign_summary.py /tmp/trace

For each process kind (coordinator lines start at ``received``, a node's at ``node.received``)
it prints, per step, the median and p90 (microseconds) of the time from the previous stamp and
the median since the first stamp, over the requests whose lines hold that step. Only complete
lines are used (those ending in ``woken`` or ``node.replied``). The stamps are
``time.perf_counter_ns`` (CLOCK_MONOTONIC, one clock for every process of the machine), so it
also prints the transport: the coordinator's ``sending`` to each node's ``node.received``
(request in) and a node's ``node.replied`` to the coordinator's ``answered`` (the slower node's
answer back, the fan-out's join included).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

Line = tuple[str, int, list[tuple[str, int]]]  # request id, t0 (ns), stamps (name, us since t0)
_SAFE = re.compile(r"[A-Za-z0-9._-]{1,64}")
GC: dict[str, list[int]] = {}  # kind -> us of garbage collection during each request


def _read(directory: Path) -> dict[str, list[Line]]:
    """Kind (the first stamp's name) -> its lines."""
    out: dict[str, list[Line]] = {}
    for f in sorted(directory.glob("trace-*.log")):
        if not f.is_file() or f.is_symlink():  # only what a traced process wrote (never block on a FIFO)
            continue
        for line in f.read_text(errors="replace").splitlines():
            parts = line.split()
            try:
                t0 = int(parts[1].removeprefix("t0="))
                gc_us = int(parts[2].removeprefix("gc="))
                stamps = [(n, int(v)) for n, v in (p.split("=", 1) for p in parts[3:])]
            except (ValueError, IndexError):
                continue
            if not all(_SAFE.fullmatch(n) for n, _ in stamps) or not _SAFE.fullmatch(parts[0]):
                continue  # not a line of sign_trace's (names are constants, ids [A-Za-z0-9._-]): never printed
            if stamps and stamps[-1][0] in ("woken", "node.replied"):
                out.setdefault(stamps[0][0], []).append((parts[0], t0, stamps))
                GC.setdefault(stamps[0][0], []).append(gc_us)
    return out


def _transport(kinds: dict[str, list[Line]]) -> None:
    coord = {rid: (t0, dict(st)) for rid, t0, st in kinds.get("received", [])}
    into: list[int] = []
    back: list[int] = []
    last: dict[str, int] = {}
    for rid, t0, st in kinds.get("node.received", []):
        c = coord.get(rid)
        if c is None or "sending" not in c[1] or "answered" not in c[1]:
            continue
        into.append((t0 - c[0]) // 1000 - c[1]["sending"])
        last[rid] = max(last.get(rid, 0), t0 // 1000 + dict(st)["node.replied"])
    for rid, replied in last.items():
        c0, cst = coord[rid]
        back.append(c0 // 1000 + cst["answered"] - replied)
    if into:
        print(f"transport (us): sending -> node.received p50 {statistics.median(into):.0f} p90 {_pct(into, 0.9)}; "
              f"last node.replied -> answered p50 {statistics.median(back):.0f} p90 {_pct(back, 0.9)}")


def _pct(xs: list[int], q: float) -> int:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory", type=Path)
    args = ap.parse_args(argv)
    kinds = _read(args.directory)
    if not kinds:
        print(f"no complete trace lines in {args.directory}", file=sys.stderr)
        return 1
    for kind, lines in kinds.items():
        order: list[str] = []
        step: dict[str, list[int]] = {}
        since: dict[str, list[int]] = {}
        for _, _, stamps in lines:
            prev = 0
            for n, us in stamps:
                if n not in step:
                    order.append(n)
                    step[n], since[n] = [], []
                step[n].append(us - prev)
                since[n].append(us)
                prev = us
        print(f"{kind}: {len(lines)} requests (us)")
        print(f"  {'step':<22}{'p50':>8}{'p90':>8}{'at p50':>9}")
        for n in order:
            print(f"  {n:<22}{statistics.median(step[n]):>8.0f}{_pct(step[n], 0.9):>8}{statistics.median(since[n]):>9.0f}")
        g = GC.get(kind, [0])
        print(f"  garbage collection during a request: p50 {statistics.median(g):.0f} p90 {_pct(g, 0.9)} max {max(g)}; "
              f"in {sum(1 for x in g if x)} of {len(g)} requests")
    _transport(kinds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
