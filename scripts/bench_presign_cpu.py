#!/usr/bin/env python3
"""CPU time of in-process presigning and full signing (issue 14 item 4), all parties in one process.

For each ``t/n`` it runs one DKG (lambda_c = 128), then ``--warmup`` untimed and ``--reps`` timed
signatures by signers ``1..t``: presign (3 rounds, every message serialised through
``crypto_core.local.run``) and the online step (``t`` shares + ``combine``, which verifies).
Prints the ``time.process_time`` medians and minima in ms (CPU of the whole process, as the
anchor's "CPU" column), one line per configuration::

    scripts/bench_presign_cpu.py --configs 2/3,3/5 --reps 30

``--tree DIR`` imports ``crypto_core`` from another checkout (e.g. ``git archive main`` unpacked),
so that a before/after comparison runs interleaved on the same machine state.
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="2/3,3/5", help="comma-separated t/n (default 2/3,3/5)")
    ap.add_argument("--reps", type=int, default=30, help="timed signatures per configuration (default 30)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed signatures first (default 3)")
    ap.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent, help="checkout to import")
    args = ap.parse_args()
    if args.reps < 1 or args.warmup < 0:
        ap.error("--reps must be at least 1 and --warmup at least 0")
    sys.path.insert(0, str(args.tree.resolve()))
    from crypto_core.combiner import combine
    from crypto_core.dkg import DkgConfig, DkgParty
    from crypto_core.local import run
    from crypto_core.sign import PresignParty, SignConfig

    for cfg in args.configs.split(","):
        t, n = (int(v) for v in cfg.split("/"))
        session = os.urandom(32)
        dkg = {i: DkgParty(DkgConfig(session, t, n, i, b"", 128)) for i in range(1, n + 1)}
        run(dkg)
        keys = {i: p.result for i, p in dkg.items() if p.result is not None}
        signers = tuple(range(1, t + 1))
        pre_ms: list[float] = []
        full_ms: list[float] = []
        for rep in range(args.warmup + args.reps):
            digest, sid = os.urandom(32), os.urandom(32)
            c0 = time.process_time()
            parties = {i: PresignParty(keys[i], SignConfig(sid, signers)) for i in signers}
            run(parties)
            c1 = time.process_time()
            shares = {}
            for i, p in parties.items():
                assert p.result is not None
                p.result.mark_used()
                # epoch= exists from issue 14's record v2 on; an older --tree has no such argument
                share_fn: Any = p.result.signature_share
                extra = {"epoch": keys[i].epoch} if "epoch" in inspect.signature(share_fn).parameters else {}
                shares[i] = share_fn(digest, key_id=keys[i].key_id, **extra)
            combine(shares, digest, signers=signers, public_key=keys[1].public_key)
            c2 = time.process_time()
            if rep >= args.warmup:
                pre_ms.append((c1 - c0) * 1e3)
                full_ms.append((c2 - c0) * 1e3)
        print(
            f"{t}-of-{n}: presign CPU median {statistics.median(pre_ms):.2f} ms (min {min(pre_ms):.2f}), "
            f"full signing CPU median {statistics.median(full_ms):.2f} ms (min {min(full_ms):.2f}), reps {args.reps}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
