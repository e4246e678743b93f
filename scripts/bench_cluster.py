#!/usr/bin/env python3
"""Cluster benchmark: keygen and signing latency (p50/p99) and signing throughput at several
client-side concurrency levels, through the coordinator's gRPC API (mTLS, real processes).

Against a running cluster::

    mpc-cluster up --nodes 5 --threshold 3 --dir var/c35
    scripts/bench_cluster.py --cluster var/c35 [--json]

or let it start (and stop) a throw-away cluster::

    scripts/bench_cluster.py --start 3/5 [--json]

Every signature goes through the approval flow, automated: requester1 submits the request,
approver1 and approver2 approve it (each decision signed with their own key), the client waits
for DONE. Latency is per request as the client sees it (submit, two approvals, signing, the
final state); throughput at concurrency c: c client threads (shared channels) issue
``--per-thread`` signatures each; signatures per second of wall time. The benchmark key gets
its own policy (proposed by admin1, approved by admin2) with a rate limit high enough for the
run, so the default 100 per hour does not cap it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from governance.policy import RateLimit  # noqa: E402
from mpcnet.client import MpcClient, SigningTeam  # noqa: E402

BENCH_RATE_LIMIT = RateLimit(1_000_000, 3600)


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


def summary(samples_s: list[float]) -> dict[str, float | int]:
    ms = [x * 1e3 for x in samples_s]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(pct(ms, 99), 2),
        "min_ms": round(min(ms), 2),
        "max_ms": round(max(ms), 2),
    }


def bench_keygen(c: MpcClient, reps: int) -> tuple[dict[str, Any], bytes]:
    times, key_id = [], b""
    for i in range(reps):
        t0 = time.perf_counter()
        k = c.create_key(f"bench-{i}")
        times.append(time.perf_counter() - t0)
        key_id = k.key_id
    return summary(times), key_id


def allow_bench_rate(directory: Path, key_id: bytes) -> None:
    """admin1 proposes a policy for the key with a high rate limit; admin2 approves it."""
    with MpcClient.from_cluster(directory, identity="admin1") as a1, MpcClient.from_cluster(directory, identity="admin2") as a2:
        p = a1.propose_policy(a1.next_policy(key_id, rate_limit=BENCH_RATE_LIMIT), key_id=key_id)
        if p.state != "applied":
            a2.approve_policy(p.proposal_id)


def bench_sign(c: SigningTeam, key_id: bytes, concurrency: int, per_thread: int) -> dict[str, Any]:
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(concurrency + 1)

    def worker(w: int) -> None:
        start.wait()
        for j in range(per_thread):
            d = hashlib.sha256(f"bench {concurrency} {w} {j} {os.urandom(8).hex()}".encode()).digest()
            t0 = time.perf_counter()
            try:
                c.sign(key_id, d)
            except Exception as e:  # counted and reported, never hidden
                with lock:
                    errors.append(str(e))
                continue
            with lock:
                lat.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"concurrency": concurrency, **summary(lat), "throughput_per_s": round(len(lat) / wall, 2), "errors": len(errors)}
    if errors:
        out["first_error"] = errors[0]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--cluster", type=Path, help="directory of a running cluster (mpc-cluster up)")
    src.add_argument("--start", metavar="T/N", help="start a temporary T-of-N cluster, benchmark it, stop it")
    ap.add_argument("--keygens", type=int, default=3)
    ap.add_argument("--signatures", type=int, default=30, help="sequential signatures for the latency figures")
    ap.add_argument("--concurrency", default="1,4,16", help="comma-separated client concurrency levels")
    ap.add_argument("--per-thread", type=int, default=0, help="signatures per thread in the throughput runs (default: 48/c, at least 6)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    ap.add_argument("--out", type=Path, help="also write the JSON to this file")
    args = ap.parse_args(argv)
    levels = [int(x) for x in args.concurrency.split(",") if x]

    cluster = None
    tmp = None
    if args.start:
        from mpcnet.cluster.launcher import LocalCluster, prepare

        t, n = (int(x) for x in args.start.split("/"))
        tmp = Path(tempfile.mkdtemp(prefix="mpcnet-bench-"))
        cluster = LocalCluster(prepare(tmp, n, t, scrypt_n=2**12))
        cluster.start_all()
        directory = tmp
    else:
        directory = args.cluster
    try:
        with (
            MpcClient.from_cluster(directory, identity="admin1", timeout=300) as c,
            SigningTeam.from_cluster(directory, timeout=300) as team,
        ):
            st = c.cluster_status()
            result: dict[str, Any] = {
                "config": {
                    "threshold": st.threshold, "parties": st.parties, "python": platform.python_version(),
                    "cpus": os.cpu_count(), "machine": platform.machine(),
                },
            }
            if not args.json:
                print(f"bench_cluster: {st.threshold}-of-{st.parties} cluster, {os.cpu_count()} cpus", flush=True)
            result["keygen"], key_id = bench_keygen(c, args.keygens)
            allow_bench_rate(directory, key_id)
            for i in range(args.warmup):
                team.sign(key_id, hashlib.sha256(b"warmup %d" % i).digest())
            seq, after_quorum = [], []
            for i in range(args.signatures):
                d = hashlib.sha256(b"latency %d" % i).digest()
                t0 = time.perf_counter()
                r = team.request(key_id, d)
                seq.append(time.perf_counter() - t0)
                if r.state != "done":
                    raise SystemExit(f"request {r.request_id} ended {r.state}: {r.error_message}")
                # coordinator clock: the approval that met the quorum -> DONE (node-side approval
                # checks, the 4 protocol rounds through the relay, combine and verify)
                quorum_at = max(a.decided_unix_ms for a in r.approvals if a.decision == "approve")
                after_quorum.append((r.updated_unix_ms - quorum_at) / 1000)
            result["sign"] = summary(seq)
            result["sign_after_quorum"] = summary(after_quorum)
            result["throughput"] = [
                bench_sign(team, key_id, lvl, args.per_thread or max(6, 48 // lvl)) for lvl in levels
            ]
    finally:
        if cluster is not None:
            cluster.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    k, s = result["keygen"], result["sign"]
    print(f"{'phase':<22}{'n':>5}{'p50 ms':>10}{'p99 ms':>10}{'sig/s':>9}{'errors':>8}")
    print(f"{'keygen':<22}{k['n']:>5}{k['p50_ms']:>10.1f}{k['p99_ms']:>10.1f}{'':>9}{0:>8}")
    print(f"{'sign (sequential)':<22}{s['n']:>5}{s['p50_ms']:>10.1f}{s['p99_ms']:>10.1f}{1000 / s['p50_ms']:>9.1f}{0:>8}")
    q = result["sign_after_quorum"]
    print(f"{'  of which quorum->done':<22}{q['n']:>5}{q['p50_ms']:>10.1f}{q['p99_ms']:>10.1f}{'':>9}{0:>8}")
    for r in result["throughput"]:
        label = f"sign @ concurrency {r['concurrency']}"
        print(f"{label:<22}{r['n']:>5}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}{r['throughput_per_s']:>9.1f}{r['errors']:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
