#!/usr/bin/env python3
"""Node cost per signature: fsyncs (durable commits) and CPU time of each node process.

Starts a throw-away T-of-N cluster (real processes), creates a key, lifts its rate limit, signs
``--warmup`` times, then attaches ``strace -f -y -e trace=fsync,fdatasync`` to every node and
signs ``--signatures`` times sequentially. Per node it reports the fsync/fdatasync calls per
signature, split by file (``node.db``: the store, ``audit.db``: the audit log), the CPU
milliseconds (``/proc/PID/stat`` utime + stime) per signature, and how often it was a signer,
then the client's p50 latency. Every SQLite commit (WAL, ``synchronous=FULL``) costs one fsync;
a WAL checkpoint adds a few. Needs strace and ptrace permission (root in the sandbox)::

    scripts/bench_node_commits.py --start 2/3 --signatures 40 [--json]

Run it on a quiet machine (``uptime``): the CPU figures include everything the node does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from governance.policy import RateLimit  # noqa: E402
from mpcnet.client import MpcClient, SigningTeam  # noqa: E402
from mpcnet.cluster.launcher import LocalCluster, prepare  # noqa: E402


def cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` (and its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fsyncs(path: Path) -> dict[str, int]:
    """fsync + fdatasync calls in an ``strace -y`` trace, by file: ``store`` (node.db*),
    ``audit`` (audit.db*), ``other``."""
    out = {"store": 0, "audit": 0, "other": 0}
    for line in path.read_text().splitlines():
        m = re.search(r"\bf(?:data)?sync\(\d+<([^>]*)>", line)
        if m is None:
            continue
        name = Path(m.group(1)).name
        out["store" if name.startswith("node.db") else "audit" if name.startswith("audit.db") else "other"] += 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", metavar="T/N", default="2/3")
    ap.add_argument("--signatures", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-trace", action="store_true", help="no strace (it slows every syscall): CPU and latency only")
    args = ap.parse_args(argv)
    if shutil.which("strace") is None and not args.no_trace:
        raise SystemExit("bench_node_commits: needs strace")
    t, n = (int(x) for x in args.start.split("/"))
    tmp = Path(tempfile.mkdtemp(prefix="mpcnet-commits-"))
    cluster = LocalCluster(prepare(tmp, n, t, scrypt_n=2**12))
    tracers: dict[str, subprocess.Popen[bytes]] = {}
    try:
        cluster.start_all()
        with (
            MpcClient.from_cluster(tmp, identity="admin1", timeout=300) as a1,
            MpcClient.from_cluster(tmp, identity="admin2", timeout=300) as a2,
            SigningTeam.from_cluster(tmp, timeout=300) as team,
        ):
            key_id = a1.create_key("commits").key_id
            p = a1.propose_policy(a1.next_policy(key_id, rate_limit=RateLimit(1_000_000, 3600)), key_id=key_id)
            if p.state != "applied":
                a2.approve_policy(p.proposal_id)
            for i in range(args.warmup):
                team.sign(key_id, hashlib.sha256(b"warmup %d" % i).digest())
            nodes = {f"node-{i}": cluster.procs[f"node-{i}"].pid for i in range(1, n + 1)}
            for name, pid in ({} if args.no_trace else nodes).items():
                tracers[name] = subprocess.Popen(
                    ["strace", "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync", "-o", str(tmp / f"{name}.strace"), "-p", str(pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            time.sleep(1.0)  # strace attached to every thread
            cpu0 = {name: cpu_s(pid) for name, pid in nodes.items()}
            signed = dict.fromkeys(nodes, 0)
            lat = []
            for i in range(args.signatures):
                t0 = time.perf_counter()
                r = team.request(key_id, hashlib.sha256(b"commits %d %s" % (i, os.urandom(8).hex().encode())).digest())
                lat.append(time.perf_counter() - t0)
                if r.state != "done" or r.signature is None:
                    raise SystemExit(f"request {r.request_id} ended {r.state}: {r.error_message}")
                for s in r.signature.signers:
                    signed[f"node-{s}"] += 1
            time.sleep(1.5)  # the background audit flush of the last signature
            cpu1 = {name: cpu_s(pid) for name, pid in nodes.items()}
            for tr in tracers.values():
                tr.send_signal(signal.SIGINT)
            for tr in tracers.values():
                tr.wait(timeout=30)
        s = args.signatures
        rows = []
        for name in nodes:
            f = fsyncs(tmp / f"{name}.strace") if not args.no_trace else {"store": 0, "audit": 0, "other": 0}
            rows.append({
                "node": name, "signer_in": signed[name],
                "fsyncs_per_signature": round(sum(f.values()) / s, 2),
                "store_fsyncs_per_signature": round(f["store"] / s, 2), "audit_fsyncs_per_signature": round(f["audit"] / s, 2),
                "cpu_ms_per_signature": round((cpu1[name] - cpu0[name]) * 1000 / s, 2),
            })
        result: dict[str, Any] = {
            "config": f"{t}-of-{n}", "signatures": s, "nodes": rows,
            "client_p50_ms": round(statistics.median(lat) * 1000, 1),
            "load_average": os.getloadavg(),
        }
    finally:
        for tr in tracers.values():
            if tr.poll() is None:
                tr.kill()
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['config']}, {s} sequential signatures, load average {' '.join(f'{x:.2f}' for x in result['load_average'])}")
    print(f"{'node':<8}{'signer in':>10}{'fsyncs/sig':>12}{'store':>8}{'audit':>8}{'cpu ms/sig':>12}")
    for row in rows:
        print(f"{row['node']:<8}{row['signer_in']:>10}{row['fsyncs_per_signature']:>12.2f}{row['store_fsyncs_per_signature']:>8.2f}"
              f"{row['audit_fsyncs_per_signature']:>8.2f}{row['cpu_ms_per_signature']:>12.2f}")
    print(f"client p50 {result['client_p50_ms']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
