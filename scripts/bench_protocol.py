#!/usr/bin/env python3
"""Protocol benchmark: every party in one process, every message serialized to bytes.

Wall time of the whole protocol, all parties, like the anchor bench in
../shared/bench/dkls-wasm (Silence Laboratories' DKLs23 WASM build). Prints a table and
optionally writes JSON::

    {"config": {...}, "keygen": {"median": ms, "min": ms, "max": ms, "bytes": B}, ...}

Bytes are payload bytes delivered per run (a broadcast counts once per receiver), as in the
anchor's "bytes delivered" column.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random  # benchmark signer-subset choice only; never used for key material
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crypto_core.dkg import DkgConfig, DkgParty  # noqa: E402
from crypto_core.keyshare import KeyShare  # noqa: E402
from crypto_core.local import RunStats, run  # noqa: E402

try:  # signing arrives with issue 3
    from crypto_core import sign as _sign
except ImportError:  # pragma: no cover
    _sign = None  # type: ignore[assignment]


def summarize(samples_ms: list[float], nbytes: int) -> dict[str, float | int]:
    return {
        "median": round(statistics.median(samples_ms), 3),
        "min": round(min(samples_ms), 3),
        "max": round(max(samples_ms), 3),
        "bytes": nbytes,
        "reps": len(samples_ms),
    }


def bench_keygen(t: int, n: int, reps: int) -> tuple[dict[str, Any], list[dict[int, KeyShare]]]:
    times, nbytes, keys = [], 0, []
    for _ in range(reps):
        session = os.urandom(32)
        parties = {i: DkgParty(DkgConfig(session, t, n, i)) for i in range(1, n + 1)}
        stats = RunStats()
        t0 = time.perf_counter()
        run(parties, stats=stats)
        times.append((time.perf_counter() - t0) * 1e3)
        nbytes = stats.bytes_delivered
        keys.append({i: p.result for i, p in parties.items() if p.result is not None})
    return summarize(times, nbytes), keys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threshold", "-t", type=int, default=2)
    ap.add_argument("--parties", "-n", type=int, default=3)
    ap.add_argument("--keygens", type=int, default=3, help="DKG repetitions")
    ap.add_argument("--signatures", type=int, default=20, help="signing repetitions (random signer subsets)")
    ap.add_argument("--json", type=Path, help="write the figures as JSON to this path")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up signatures")
    args = ap.parse_args(argv)
    t, n = args.threshold, args.parties
    if not 2 <= t <= n:
        ap.error("need 2 <= threshold <= parties")
    if args.keygens < 1:
        ap.error("--keygens must be at least 1")

    result: dict[str, Any] = {
        "config": {
            "threshold": t,
            "parties": n,
            "keygens": args.keygens,
            "signatures": args.signatures,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        }
    }
    print(f"bench_protocol: {t}-of-{n}, all parties in one process, messages serialized", flush=True)
    result["keygen"], keys = bench_keygen(t, n, args.keygens)

    if _sign is not None and args.signatures > 0:
        result.update(_sign_phases(t, n, keys[-1], args.signatures, args.warmup))

    rows: list[tuple[str, dict[str, Any]]] = [(k, v) for k, v in result.items() if isinstance(v, dict) and "median" in v]
    print(f"{'phase':<10}{'reps':>6}{'median ms':>12}{'min ms':>10}{'max ms':>10}{'bytes/run':>12}")
    for name, v in rows:
        print(f"{name:<10}{v['reps']:>6}{v['median']:>12.2f}{v['min']:>10.2f}{v['max']:>10.2f}{v['bytes']:>12,}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _sign_phases(t: int, n: int, keys: dict[int, KeyShare], reps: int, warmup: int) -> dict[str, Any]:
    """Presign, online and total signing times over random signer subsets; samples for checking."""
    assert _sign is not None
    bench: Callable[..., dict[str, Any]] = getattr(_sign, "bench_phases")
    rng = random.SystemRandom()
    return bench(keys, reps=reps, warmup=warmup, choose=lambda: sorted(rng.sample(range(1, n + 1), t)))


if __name__ == "__main__":
    raise SystemExit(main())
