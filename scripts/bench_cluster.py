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

Around every phase (the sequential signatures, each concurrency level, the sustained run) it
measures (mpcnet.cluster.bench_meter): **CPU ms per signature per process** (coordinator and
each node from /proc/PID/stat utime+stime, the client -- this process, all its threads -- from
getrusage), the **CPU-bound ceiling** (cores / total CPU seconds per signature), and **fsync'd
commits per signature per process** (each process's ``mpcnet_store_commits_total`` from its
metrics endpoint in cluster.json; exported only by processes started with ``MPCNET_COMMIT_LOG``,
else the CPU figures come alone). For the sequential signatures it also counts the **commits on
the critical path**: from the moment the client sends the approval that meets the quorum through
the coordinator's DONE commit, per process, median over the signatures (needs the processes to
log commits: ``--start`` sets ``MPCNET_COMMIT_LOG`` itself; for ``--cluster`` start the cluster
with ``MPCNET_COMMIT_LOG=DIR mpc-cluster up ...`` and pass ``--commit-log DIR``).
``--sustained S`` adds a run of S seconds at ``--sustained-concurrency``: with presignature
pools the refiller runs while it signs (sustained with refilling), where a burst starts from full
pools.

**Presignature pools (issue 14).** Every phase reports the share of its requests the coordinator
signed from a pool in one round (``presigned_share``), and the sequential phase splits its
quorum->done figures into presigned and full-protocol requests. With ``--warm`` the benchmark
waits before each phase (and before each sequential signature) until every pool of its key is
full (``ClusterStatus.pools``: at target, nothing filling; a pool left below target, which the
refiller tops up only once it falls to ``refill_at``, is first emptied by untimed signatures;
mpcnet.cluster.bench_pools), so
"quorum->done with warm pools" and "burst from full pools" mean what they say; a burst then
signs ``--burst`` requests (default: as many as were ready, at least one per thread). When the
coordinator keeps no pools it says "pools disabled" (or "pools empty") and measures the full
protocol. ``--start`` clusters have pools on (mpc-cluster's default), ``--no-presign`` turns
them off for a side-by-side run. For 2-of-3 and 3-of-5 run it twice (``--start 2/3``,
``--start 3/5``).
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
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from governance.policy import RateLimit  # noqa: E402
from mpcnet.client import MpcClient, SigningTeam  # noqa: E402
from mpcnet.client.sdk import TEAM_DECIDE_WAIT_MS, TERMINAL_STATES, MpcError, SignRequest, error_of  # noqa: E402
from mpcnet.cluster.bench_meter import (  # noqa: E402
    Commit,
    Meter,
    MeterError,
    Processes,
    cores,
    critical_path_commits,
    read_commit_log,
    scrape_commits,
)
from mpcnet.cluster.bench_pools import DISABLED, NOTES, PoolWait, fill_to_target, presigned_share, wait_warm  # noqa: E402
from mpcnet.common.stores.commit_count import ENV as COMMIT_LOG_ENV  # noqa: E402

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


def bench_sign(
    c: SigningTeam, key_id: bytes, concurrency: int, per_thread: int, meter: Meter | None = None, seconds: float = 0.0,
    pools: PoolWait | None = None,
) -> dict[str, Any]:
    """``concurrency`` threads sign ``per_thread`` digests each (or, with ``seconds`` > 0, until
    that many seconds have passed); latency, throughput, the share signed from a pool, and with
    ``meter`` the phase's cost; ``pools``: how the pools stood at the start (``--warm``)."""
    lat: list[float] = []
    presigned: list[bool] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def worker(w: int) -> None:
        start.wait()
        j = -1
        while True:
            j += 1
            if (seconds <= 0 and j >= per_thread) or (seconds > 0 and time.perf_counter() >= stop_at[0]):
                break
            d = hashlib.sha256(f"bench {concurrency} {w} {j} {os.urandom(8).hex()}".encode()).digest()
            t0 = time.perf_counter()
            try:
                r = c.request(key_id, d)
                if r.state != "done" or r.signature is None:
                    raise error_of(r)
            except Exception as e:  # counted and reported, never hidden
                with lock:
                    errors.append(str(e))
                continue
            with lock:
                lat.append(time.perf_counter() - t0)
                presigned.append(r.presigned)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    watched = c.watched
    before = meter.snapshot() if meter else None
    stop_at[0] = time.perf_counter() + seconds
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = meter.snapshot() if meter else None
    out: dict[str, Any] = {
        "concurrency": concurrency, **summary(lat), "throughput_per_s": round(len(lat) / wall, 2), "errors": len(errors),
        "wall_s": round(wall, 2), **presigned_share(presigned),
        "watched": c.watched - watched,  # requests whose deciding answer was not final (a watch followed)
    }
    if pools is not None:
        out["pools_at_start"] = pools.as_dict()
    if before and after and lat:
        out.update(Meter.cost(before, after, len(lat)).as_dict())
    if errors:
        out["first_error"] = errors[0]
    return out


def request_timed(team: SigningTeam, key_id: bytes, digest: bytes) -> tuple[SignRequest, int]:
    """:meth:`SigningTeam.request`, also returning when (Unix ns, this host's clock) the client
    sent the approval that met the quorum (the last one sent while the request was pending)."""
    r = team.requester.submit_sign_request(key_id, digest, description="automated signing request")
    quorum_sent_ns = 0
    for a in team.approvers:
        if r.state != "pending_approval":
            break
        quorum_sent_ns = time.time_ns()
        r = a.approve(r.request_id, wait_done_ms=team.decide_wait_ms)
    if r.state not in TERMINAL_STATES:
        r = team.requester.wait_sign_request(r.request_id, timeout=team.requester.timeout)
    return r, quorum_sent_ns


def commit_counted(processes: Processes, quiet: bool) -> Processes:
    """``processes``, without metrics endpoints (CPU figures only) when they do not export
    ``mpcnet_store_commits_total`` (a cluster started without MPCNET_COMMIT_LOG)."""
    try:
        for ep in processes.metrics.values():
            scrape_commits(ep)
    except MeterError as e:
        if not quiet:
            print(f"no commit counts: {e}", file=sys.stderr)
        return replace(processes, metrics={})
    return processes


def median_per_process(rows: list[dict[str, int]]) -> dict[str, float]:
    """Per process (and total), the median over signatures of the critical-path commit counts
    (a process with no commit in a signature's window counts 0 there)."""
    names = sorted({n for r in rows for n in r})
    return {n: statistics.median([r.get(n, 0) for r in rows]) for n in names}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--cluster", type=Path, help="directory of a running cluster (mpc-cluster up)")
    src.add_argument("--start", metavar="T/N", help="start a temporary T-of-N cluster, benchmark it, stop it")
    ap.add_argument("--keygens", type=int, default=3)
    ap.add_argument("--signatures", type=int, default=30, help="sequential signatures for the latency figures")
    ap.add_argument("--concurrency", default="1,4,16,64", help="comma-separated client concurrency levels")
    ap.add_argument("--per-thread", type=int, default=0, help="signatures per thread in the throughput runs (default: 48/c, at least 6)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--sustained", type=float, default=0.0, metavar="S",
                    help="also sign for S seconds at --sustained-concurrency (0: skip)")
    ap.add_argument("--sustained-concurrency", type=int, default=16)
    ap.add_argument("--commit-log", type=Path, metavar="DIR",
                    help=f"with --cluster: the {COMMIT_LOG_ENV} directory the cluster was started with (critical-path commits)")
    ap.add_argument("--warm", action="store_true",
                    help="wait until every presignature pool of the bench key is full before each phase (and each sequential signature)")
    ap.add_argument("--warm-timeout", type=float, default=120.0, metavar="S", help="--warm: give up waiting after S seconds")
    ap.add_argument("--burst", type=int, default=0, metavar="N",
                    help="--warm: signatures per burst (default: the presignatures ready at its start, at least one per thread)")
    ap.add_argument("--decide-wait-ms", type=int, default=TEAM_DECIDE_WAIT_MS, metavar="MS",
                    help="how long the deciding approval's answer may wait for DONE (0: answer SIGNING, then watch)")
    ap.add_argument("--no-presign", action="store_true", help="with --start: a cluster without presignature pools")
    ap.add_argument("--coordinator-set", action="append", default=[], metavar="KEY=JSON",
                    help="with --start: set a key of the coordinator's config.json before it starts (A/B of a setting, "
                    "e.g. max_waiting_decisions=24); repeatable")
    ap.add_argument("--no-meter", action="store_true", help="skip the CPU and commit figures (a cluster without metrics endpoints)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    ap.add_argument("--out", type=Path, help="also write the JSON to this file")
    args = ap.parse_args(argv)
    try:
        levels = [int(x) for x in args.concurrency.split(",") if x]
    except ValueError:
        ap.error("--concurrency: comma-separated positive integers")
    if any(lvl < 1 for lvl in levels) or args.sustained < 0 or args.sustained_concurrency < 1:
        ap.error("--concurrency, --sustained-concurrency: at least 1; --sustained: not negative")
    if args.commit_log is not None and args.start:
        ap.error("--commit-log: only with --cluster (--start logs commits itself)")
    if not 0 <= args.decide_wait_ms <= 5000:
        ap.error("--decide-wait-ms: 0 to 5000")
    overrides: dict[str, Any] = {}
    for item in args.coordinator_set:
        key, sep, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            sep = ""
        if not sep or not key:
            ap.error(f"--coordinator-set: KEY=JSON, got {item!r}")
    if overrides and not args.start:
        ap.error("--coordinator-set: only with --start")
    if args.no_presign and not args.start:
        ap.error("--no-presign: only with --start (a running cluster keeps its own setting)")
    if ((args.burst or args.warm_timeout != 120.0) and not args.warm) or args.burst < 0 or args.warm_timeout <= 0:
        ap.error("--burst, --warm-timeout: only with --warm; --burst not negative, --warm-timeout > 0")

    cluster = None
    tmp = None
    commit_log: Path | None = args.commit_log
    if args.start:
        from mpcnet.cluster.launcher import LocalCluster, prepare

        try:
            t, n = (int(x) for x in args.start.split("/"))
        except ValueError:
            ap.error("--start: T/N, e.g. 2/3")
        tmp = Path(tempfile.mkdtemp(prefix="mpcnet-bench-"))
        commit_log = tmp / "commit-log"
        commit_log.mkdir(mode=0o700)
        lay = prepare(tmp / "cluster", n, t, scrypt_n=2**12, presign=not args.no_presign)
        if overrides:
            conf = json.loads(lay.coordinator_config.read_text())
            lay.coordinator_config.write_text(json.dumps(conf | overrides, indent=2) + "\n")
        cluster = LocalCluster(lay, env={COMMIT_LOG_ENV: str(commit_log)})
        cluster.start_all()
        directory = tmp / "cluster"
    else:
        directory = args.cluster
    try:
        with (
            MpcClient.from_cluster(directory, identity="admin1", timeout=300) as c,
            SigningTeam.from_cluster(directory, timeout=300) as team,
        ):
            team.decide_wait_ms = args.decide_wait_ms
            st = c.cluster_status()
            result: dict[str, Any] = {
                "config": {
                    "coordinator_set": overrides, "threshold": st.threshold, "parties": st.parties, "python": platform.python_version(),
                    "cpus": os.cpu_count(), "machine": platform.machine(),
                },
            }
            result["config"]["cores"] = cores()
            if not args.json:
                sets = "".join(f", coordinator {k}={json.dumps(v)}" for k, v in overrides.items())
                print(f"bench_cluster: {st.threshold}-of-{st.parties} cluster, {cores()} cores{sets}", flush=True)
            meter = None if args.no_meter else Meter(commit_counted(Processes.from_cluster(directory), args.json))
            result["keygen"], key_id = bench_keygen(c, args.keygens)
            allow_bench_rate(directory, key_id)
            for i in range(args.warmup):
                team.sign(key_id, hashlib.sha256(b"warmup %d" % i).digest())

            drains = [0]

            def drain_one() -> None:
                drains[0] += 1
                try:  # a failed drain shows in the next wait (still partial), not as a benchmark error
                    team.sign(key_id, hashlib.sha256(b"drain %d %s" % (drains[0], os.urandom(8).hex().encode())).digest())
                except MpcError as e:
                    print(f"drain signature failed: {e}", file=sys.stderr)

            def warm(min_ready: int | None = None) -> PoolWait | None:
                """--warm: wait for the pools of the bench key (None without --warm); before a
                phase, pools left below target are emptied (untimed) so they refill to it."""
                if not args.warm:
                    return None
                if min_ready is not None:
                    return wait_warm(c.presign_status, key_id, timeout_s=args.warm_timeout, min_ready=min_ready)
                return fill_to_target(c.presign_status, key_id, drain_one, timeout_s=args.warm_timeout)

            pools = c.presign_status()
            result["config"]["presign_enabled"] = pools.enabled
            seq, after_quorum = [], []
            by_path: dict[bool, list[float]] = {True: [], False: []}  # presigned or not -> quorum->done seconds
            seq_presigned: list[bool] = []
            waits: list[PoolWait] = []
            windows: list[tuple[int, int]] = []  # (quorum approval sent, ns; DONE record, ms)
            first = warm()
            if first is not None:
                waits.append(first)
                if not args.json:
                    counts = "" if first.state == DISABLED else f" ({first.ready} ready of {first.target})"
                    print(f"pools of the bench key: {first.note}{counts}", flush=True)
            before = meter.snapshot() if meter else None
            for i in range(args.signatures):
                w = warm(min_ready=1) if i and first is not None and first.state != DISABLED else None
                if w is not None:
                    waits.append(w)
                d = hashlib.sha256(b"latency %d %s" % (i, os.urandom(8).hex().encode())).digest()
                t0 = time.perf_counter()
                r, quorum_sent_ns = request_timed(team, key_id, d)
                seq.append(time.perf_counter() - t0)
                if r.state != "done":
                    raise SystemExit(f"request {r.request_id} ended {r.state}: {r.error_message}")
                # coordinator clock: the approval that met the quorum -> DONE (node-side approval
                # checks, one round from a pool presignature or the 4 protocol rounds through the
                # relay, combine and verify)
                quorum_at = max(a.decided_unix_ms for a in r.approvals if a.decision == "approve")
                after_quorum.append((r.updated_unix_ms - quorum_at) / 1000)
                by_path[r.presigned].append((r.updated_unix_ms - quorum_at) / 1000)
                seq_presigned.append(r.presigned)
                windows.append((quorum_sent_ns, r.updated_unix_ms))
            after = meter.snapshot() if meter else None
            result["sign"] = summary(seq) | presigned_share(seq_presigned)
            result["sign_after_quorum"] = summary(after_quorum)
            result["sign_after_quorum_presigned"] = summary(by_path[True]) if by_path[True] else None
            result["sign_after_quorum_full"] = summary(by_path[False]) if by_path[False] else None
            if waits:
                result["sign"]["pools_at_start"] = waits[0].as_dict()
                result["sign"]["pool_waits"] = {s: sum(1 for w in waits if w.state == s) for s in sorted({w.state for w in waits})}
                result["sign"]["pool_wait_s"] = round(sum(w.waited_s for w in waits), 2)
            if before and after and seq:
                result["sign"].update(Meter.cost(before, after, len(seq)).as_dict())
            if commit_log is not None and meter is not None and windows:
                time.sleep(0.2)  # the last DONE commit's log line
                log: list[Commit] = read_commit_log(commit_log, meter.processes.pids)
                rows = [x for x in (critical_path_commits(log, q, d) for q, d in windows) if x is not None]
                result["sign"]["critical_path_commits"] = median_per_process(rows) if rows else None
                result["sign"]["critical_path_windows"] = len(rows)
            result["throughput"] = []
            for lvl in levels:
                w = warm()
                per_thread = args.per_thread or max(6, 48 // lvl)
                if w is not None and w.state != DISABLED and not args.per_thread:  # a burst from full pools
                    per_thread = max(1, -(-(args.burst or w.ready) // lvl))
                result["throughput"].append(bench_sign(team, key_id, lvl, per_thread, meter, pools=w))
            if args.sustained > 0:
                w = warm()
                result["sustained"] = bench_sign(team, key_id, args.sustained_concurrency, 0, meter, seconds=args.sustained, pools=w)
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
    print(f"{'phase':<26}{'n':>5}{'p50 ms':>10}{'p99 ms':>10}{'sig/s':>9}{'errors':>8}{'presigned':>11}{'watched':>9}")
    print(f"{'keygen':<26}{k['n']:>5}{k['p50_ms']:>10.1f}{k['p99_ms']:>10.1f}{'':>9}{0:>8}")
    print(f"{'sign (sequential)':<26}{s['n']:>5}{s['p50_ms']:>10.1f}{s['p99_ms']:>10.1f}{1000 / s['p50_ms']:>9.1f}{0:>8}"
          f"{share_text(s):>11}")
    for key, label in (("sign_after_quorum", "  of which quorum->done"), ("sign_after_quorum_presigned", "    presigned (one round)"),
                       ("sign_after_quorum_full", "    full protocol")):
        q = result.get(key)
        if q:
            print(f"{label:<26}{q['n']:>5}{q['p50_ms']:>10.1f}{q['p99_ms']:>10.1f}{'':>9}{0:>8}")
    phases: list[tuple[str, dict[str, Any]]] = [("sign (sequential)", s)]
    for r in result["throughput"] + ([result["sustained"]] if "sustained" in result else []):
        label = f"sign @ concurrency {r['concurrency']}" if r is not result.get("sustained") else f"sustained @ {r['concurrency']}"
        print(f"{label:<26}{r['n']:>5}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}{r['throughput_per_s']:>9.1f}{r['errors']:>8}"
              f"{share_text(r):>11}{r['watched']:>9}")
        phases.append((label, r))
    print(f"\npresignature pools: {pool_text(result, phases)}")
    for line in refill_notes(phases):
        print(f"  {line}")
    print_costs(phases)
    cp = s.get("critical_path_commits")
    if cp:
        per = ", ".join(f"{k} {v:g}" for k, v in cp.items() if k not in ("total", "serial"))
        print(f"\ncommits on the critical path (quorum approval sent -> DONE commit), medians over "
              f"{s['critical_path_windows']} sequential signatures: {cp['total']:g} in all processes, "
              f"{cp['serial']:g} in series (coordinator + busiest node); per process: {per}")
    return 0


def share_text(r: dict[str, Any]) -> str:
    """``75%`` of a phase's requests signed from a pool (``-`` for none)."""
    share = r.get("presigned_share")
    return "-" if share is None else f"{100 * share:.0f}%"


def pool_text(result: dict[str, Any], phases: list[tuple[str, dict[str, Any]]]) -> str:
    """One line: whether the coordinator keeps pools and, with --warm, how they stood at each phase's start."""
    if not result["config"].get("presign_enabled"):
        return NOTES[DISABLED]
    starts = [f"{label}: {r['pools_at_start']['note']} ({r['pools_at_start']['ready']} ready of {r['pools_at_start']['target']})"
              for label, r in phases if "pools_at_start" in r]
    return "enabled; " + ("; ".join(starts) if starts else "not waited for (no --warm): phases start from whatever is ready")


def refill_notes(phases: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """One line per phase that signed more requests than there were ready presignatures at its
    start (e.g. a burst at concurrency 64 on pools of 32): its figures include refilling the pools
    (presign sessions on the nodes, relayed by the coordinator) during the phase."""
    out = []
    for label, r in phases:
        ready = r.get("pools_at_start", {}).get("ready")
        if ready is not None and r.get("n", 0) > ready:
            out.append(f"{label}: {r['n']} signatures on {ready} ready presignatures: the pools were refilled during "
                       "the phase (presign sessions on the nodes), and its figures include that")
    return out


def print_costs(phases: list[tuple[str, dict[str, Any]]]) -> None:
    """CPU ms and fsync'd commits per signature per process, and the CPU-bound ceiling."""
    rows = [(label, r) for label, r in phases if "cpu_ms_per_sig" in r]
    if not rows:
        return
    names = list(rows[0][1]["cpu_ms_per_sig"])
    print(f"\nCPU ms per signature (ceiling = {cores()} cores / total CPU s per signature)")
    print(f"{'phase':<22}" + "".join(f"{n:>12}" for n in names) + f"{'ceiling/s':>11}")
    for label, r in rows:
        cpu = r["cpu_ms_per_sig"]
        print(f"{label:<22}" + "".join(f"{cpu.get(n, 0):>12.1f}" for n in names) + f"{r['cpu_bound_ceiling_per_s']:>11.1f}")
    if not rows[0][1]["commits_per_sig"]:
        return
    names = list(rows[0][1]["commits_per_sig"])
    print("\nfsync'd commits per signature (mpcnet_store_commits_total)")
    print(f"{'phase':<22}" + "".join(f"{n:>12}" for n in names))
    for label, r in rows:
        cm = r["commits_per_sig"]
        print(f"{label:<22}" + "".join(f"{cm.get(n, 0):>12.2f}" for n in names))


if __name__ == "__main__":
    sys.exit(main())
