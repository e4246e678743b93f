#!/usr/bin/env python3
"""Refill-only benchmark (issue 14): CPU per presignature made by the coordinator's refiller,
per process, with no signing at all.

It starts a throw-away cluster (``--start T/N``) whose coordinator keeps pools of ``--target``
presignatures (``cap`` = target, ``refill_at`` = 0, ``--batch`` per presign session,
``--max-parallel`` sessions at once), and reads each process's CPU (coordinator and nodes from
/proc/PID/stat, the client: this process; mpcnet.cluster.bench_meter) and fsync'd commits over a
window from just before it creates one key until every pool of that key is full (nothing
filling). The window holds the keygen too (the refiller starts as soon as the key exists), so
``--no-pools`` measures the same window with pools off (the keygen alone) and ``--keygen-ms``
subtracts a keygen's total CPU (ms, e.g. the median of ``--no-pools`` runs) before dividing by
the presignatures made::

    scripts/bench_refill.py --start 2/3 --no-pools            # keygen alone: "window CPU ms"
    scripts/bench_refill.py --start 2/3 --target 32 --batch 4 --keygen-ms 367

A node keeps at most 64 fresh presignatures per key (``max_presignatures_per_key``) and the
refiller keeps two signer sets per key, so ``--target`` at most 32 for 2-of-3. ``--py-spy PATH``
also records every process's stacks over the window (raw format, in ``--profile-dir``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from mpcnet.client.sdk import MpcClient
from mpcnet.cluster.bench_meter import Meter, Processes
from mpcnet.cluster.launcher import LocalCluster, prepare
from mpcnet.common.stores.commit_count import ENV as COMMIT_LOG_ENV


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", default="2/3", help="T/N (default 2/3)")
    ap.add_argument("--target", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--max-parallel", type=int, default=1)
    ap.add_argument("--no-pools", dest="pools", action="store_false", help="pools off: the window holds the keygen alone")
    ap.add_argument("--keygen-ms", type=float, default=0.0, help="a keygen's total CPU ms, subtracted before dividing")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--py-spy", default="", metavar="PATH", help="record every process's stacks with this py-spy")
    ap.add_argument("--profile-dir", type=Path, default=Path("."))
    args = ap.parse_args()
    t, n = (int(x) for x in args.start.split("/"))
    tmp = Path(tempfile.mkdtemp(prefix="mpcnet-refill-"))
    lay = prepare(tmp / "cluster", n, t, scrypt_n=2**12, presign=True)
    doc = json.loads(lay.coordinator_config.read_text(encoding="utf-8"))
    doc["presign"].update(enabled=args.pools, target=args.target, cap=args.target, refill_at=0, batch=args.batch,
                          max_parallel=args.max_parallel)
    lay.coordinator_config.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    (tmp / "commit-log").mkdir(mode=0o700)  # the processes then export their commit counts
    cluster = LocalCluster(lay, env={COMMIT_LOG_ENV: str(tmp / "commit-log")})
    cluster.start_all()
    try:
        with MpcClient.from_cluster(tmp / "cluster", identity="admin1", timeout=300) as c:
            meter = Meter(Processes.from_cluster(tmp / "cluster"))
            c.cluster_status()  # the channel is up before the window
            spies = [
                subprocess.Popen([args.py_spy, "record", "--nonblocking", "-r", "250", "-f", "raw", "-p", str(pid),
                                  "-o", str(args.profile_dir / f"{name}.txt")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for name, pid in meter.processes.pids.items()
            ] if args.py_spy else []
            before = meter.snapshot()
            t0 = time.monotonic()
            key_id = c.create_key("refill-bench").key_id
            made = 0
            while args.pools:
                pools = [p for p in c.presign_status().pools if p.key_id == key_id]
                made = sum(p.ready for p in pools)
                if pools and all(p.ready >= p.target and p.filling == 0 for p in pools):
                    break
                if time.monotonic() - t0 > args.timeout:
                    raise SystemExit(f"pools not full after {args.timeout} s ({made} ready)")
                time.sleep(0.05)
            wall = time.monotonic() - t0
            after = meter.snapshot()
            for sp in spies:
                sp.send_signal(signal.SIGINT)
            for sp in spies:
                sp.wait(30)
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    window = Meter.cost(before, after, 1)
    out: dict[str, object] = {"presignatures": made, "batch": args.batch, "wall_s": round(wall, 2),
                              "window_cpu_ms": dict(window.cpu_ms_per_sig), "window_commits": dict(window.commits_per_sig)}
    if made:
        per = round((window.cpu_ms_per_sig["total"] - args.keygen_ms) / made, 2)
        out["cpu_ms_per_presig"] = per
        out["commits_per_presig"] = round(window.commits_per_sig.get("total", 0) / made, 2)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"window ({made} presignatures, batch {args.batch}, {wall:.1f} s): CPU ms "
          + ", ".join(f"{k} {v:.0f}" for k, v in window.cpu_ms_per_sig.items())
          + "; commits " + ", ".join(f"{k} {v:.0f}" for k, v in window.commits_per_sig.items()))
    if made:
        print(f"CPU ms per presignature (all processes, keygen {args.keygen_ms:.0f} ms subtracted): {out['cpu_ms_per_presig']}; "
              f"commits per presignature: {out['commits_per_presig']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
