#!/usr/bin/env python3
"""Side-by-side benchmark against the anchor: Silence Laboratories' DKLs23 WASM build.

Runs ../shared/bench/dkls-wasm/bench.mjs (copied into the git-ignored .bench/ folder and
installed there with ``npm ci``; it is a yardstick only, never a dependency of ours: its licence
forbids that) and then scripts/bench_protocol.py's measurements for the same configurations,
in one run on this machine, and prints our time and bytes as a ratio of the anchor's, for
keygen, signing and proactive refresh (issue 11's target: refresh at most 0.1x the anchor's),
and the CPU-time ratios of refresh and of full signing, presign plus online (issue 14's target:
signing at most 0.12x the anchor's CPU time; both sides measure process CPU time, ours
``time.process_time``, the anchor's ``process.cpuUsage``).

    scripts/bench_compare.py --configs 2/3,3/5,5/9 --keygens 2 --signatures 20 --refreshes 1 --rounds 3

The anchor is looked up in ../shared/bench/dkls-wasm next to the checkout, then one level up (a
git worktree under ../wt/NAME); ``--anchor DIR`` names it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_protocol  # noqa: E402

from crypto_core.params import LAMBDA_C, SUPPORTED_LAMBDA  # noqa: E402
from mpcnet.common.heap_tuning import keep_heap  # noqa: E402

ANCHOR_SRCS = tuple(up / "shared" / "bench" / "dkls-wasm" for up in (ROOT.parent, ROOT.parent.parent))
ANCHOR_DIR = ROOT / ".bench" / "dkls-wasm"
REFRESH_TARGET = 0.1  # issue 11: our refresh at most 0.1x the anchor's time
SIGN_TARGET = 0.12  # issue 14: full in-process signing at most 0.12x the anchor's CPU time


def anchor_source(given: Path | None) -> Path:
    """The anchor bench folder: ``given``, else the first of ANCHOR_SRCS holding bench.mjs."""
    for src in (given,) if given is not None else ANCHOR_SRCS:
        if (src / "bench.mjs").exists():
            return src
    raise SystemExit(f"anchor bench not found at {given or ' or '.join(map(str, ANCHOR_SRCS))}")


def run_anchor(src: Path, configs: str, keygens: int, signatures: int, refreshes: int) -> dict[str, Any]:
    ANCHOR_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("bench.mjs", "package.json", "package-lock.json"):
        shutil.copyfile(src / name, ANCHOR_DIR / name)
    if not (ANCHOR_DIR / "node_modules").exists():
        print("== npm ci (anchor, into .bench/)", flush=True)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=ANCHOR_DIR, check=True)
    out = ANCHOR_DIR / "results.json"
    cmd = [
        "node", "bench.mjs", "--passes", "1", "--keygen-reps", str(keygens), "--sign-reps", str(signatures),
        "--refresh-reps", str(refreshes), "--configs", configs, "--out", str(out),
    ]
    print(f"== anchor: {configs}", flush=True)
    subprocess.run(cmd, cwd=ANCHOR_DIR, check=True, stdout=subprocess.DEVNULL)
    data = json.loads(out.read_text())
    res = {}
    for cfg in data["passes"][0]["configs"]:
        key = f"{cfg['t']}/{cfg['n']}" if "t" in cfg else None
        if key is None:
            continue
        res[key] = {
            "keygen": {"median": cfg["keygen"]["wall"]["median"], "bytes": cfg["keygen"]["bytesDelivered"]},
            **{
                ours: {
                    "median": cfg["sign"][theirs]["wall"]["median"], "cpu_median": cfg["sign"][theirs]["cpu"]["median"],
                    "bytes": cfg["sign"][theirs]["bytesDelivered"],
                }
                for ours, theirs in (("presign", "presign"), ("online", "final"), ("sign", "total"))
            },
        }
        if "refresh" in cfg:
            rf = cfg["refresh"]
            res[key]["refresh"] = {"median": rf["wall"]["median"], "cpu_median": rf["cpu"]["median"], "bytes": rf["bytesDelivered"]}
    return res


def run_ours(t: int, n: int, keygens: int, signatures: int, refreshes: int, lambda_c: int) -> dict[str, Any]:
    print(f"== ours: {t}-of-{n}, lambda_c={lambda_c}", flush=True)
    kg, keys = bench_protocol.bench_keygen(t, n, keygens, lambda_c)
    res: dict[str, Any] = {"keygen": kg}
    res.update(bench_protocol.bench_signing(t, n, keys[-1], signatures, warmup=2))
    res.pop("samples")
    if refreshes > 0:
        res["refresh"], _ = bench_protocol.bench_refresh(t, n, keys[-1], refreshes)
    return res


PHASES = ("keygen", "presign", "online", "sign", "refresh")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="2/3,3/5,5/9")
    ap.add_argument("--keygens", type=int, default=2)
    ap.add_argument("--signatures", type=int, default=20)
    ap.add_argument("--refreshes", type=int, default=1, help="refresh repetitions, both sides (0: none)")
    ap.add_argument("--anchor", type=Path, help="the anchor bench folder (default: ../shared/bench/dkls-wasm)")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the interleaved comparison; report median ratios")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--lambda-c", type=int, default=LAMBDA_C, choices=SUPPORTED_LAMBDA)
    args = ap.parse_args()
    print(f"heap tuning (as mpc-node; MPCNET_HEAP_TUNING=0: off): {keep_heap()}", flush=True)
    configs = [tuple(map(int, c.split("/"))) for c in args.configs.split(",")]
    src = anchor_source(args.anchor)
    # interleaved per configuration (anchor, then ours), so that load drifting on a shared
    # machine does not favour whichever side runs first; --rounds repeats the whole sequence
    runs: list[dict[str, Any]] = []
    for rnd in range(args.rounds):
        anchor: dict[str, Any] = {}
        ours: dict[str, Any] = {}
        for t, n in configs:
            anchor.update(run_anchor(src, f"{t}/{n}", args.keygens, args.signatures, args.refreshes))
            ours[f"{t}/{n}"] = run_ours(t, n, args.keygens, args.signatures, args.refreshes, args.lambda_c)
        runs.append({"anchor": anchor, "ours": ours})
        print(f"-- round {rnd + 1}/{args.rounds}")
        _table([runs[-1]])
    if args.rounds > 1:
        print(f"== median over {args.rounds} rounds (ratio range in brackets)")
        _table(runs)
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "lambda_c": args.lambda_c}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _table(runs: list[dict[str, Any]]) -> None:
    keys = list(runs[0]["ours"])
    print(
        f"{'config':<7}{'phase':<9}{'ours ms':>10}{'anchor ms':>11}{'ratio':>8}{'  [range]':<17}"
        f"{'ours bytes':>13}{'anchor bytes':>14}{'ratio':>8}{'ours cpu':>10}{'anchor cpu':>12}{'cpu ratio':>11}"
    )
    for key in keys:
        for phase in PHASES:
            if any(phase not in r["ours"][key] or phase not in r["anchor"][key] for r in runs):
                continue
            o = [r["ours"][key][phase] for r in runs]
            a = [r["anchor"][key][phase] for r in runs]
            ratios = [x["median"] / y["median"] for x, y in zip(o, a, strict=True)]
            om = statistics.median(x["median"] for x in o)
            am = statistics.median(y["median"] for y in a)
            rng = f"  [{min(ratios):.3f}-{max(ratios):.3f}]" if len(runs) > 1 else ""
            ob, ab = o[-1]["bytes"], a[-1]["bytes"]
            cpu = ""
            if all("cpu_median" in x for x in o + a):  # process CPU ms, both sides
                oc, ac = statistics.median(x["cpu_median"] for x in o), statistics.median(y["cpu_median"] for y in a)
                cr = statistics.median(x["cpu_median"] / y["cpu_median"] for x, y in zip(o, a, strict=True))
                cpu = f"{oc:>10.1f}{ac:>12.1f}{cr:>11.3f}"
            print(
                f"{key:<7}{phase:<9}{om:>10.1f}{am:>11.1f}{statistics.median(ratios):>8.3f}{rng:<17}{ob:>13,}{ab:>14,.0f}"
                f"{ob / ab:>8.3f}{cpu}"
            )
    for phase, target, measures in (
        ("refresh", REFRESH_TARGET, (("wall", "median"), ("CPU", "cpu_median"))),
        ("sign", SIGN_TARGET, (("CPU", "cpu_median"),)),
    ):
        for what, field in measures:
            line = target_line(runs, keys, phase, field, target)
            if line:
                print(f"{phase} ours/anchor ({what} time): {line}")


def target_line(runs: list[dict[str, Any]], keys: list[str], phase: str, field: str, target: float) -> str:
    """``"2/3 0.081x, 3/5 0.094x (target <= 0.12x: met)"``: per configuration, the median over
    rounds of ours/anchor for ``phase``'s ``field``; "" when no configuration has it on both sides."""
    both = [
        key for key in keys
        if all(field in r["ours"][key].get(phase, {}) and field in r["anchor"][key].get(phase, {}) for r in runs)
    ]
    ratio = {key: statistics.median(r["ours"][key][phase][field] / r["anchor"][key][phase][field] for r in runs) for key in both}
    if not ratio:
        return ""
    met = "met" if all(x <= target for x in ratio.values()) else "NOT met"
    shown = ", ".join(f"{key} {x:.3f}x" for key, x in ratio.items())
    return f"{shown} (target <= {target}x: {met})"


if __name__ == "__main__":
    raise SystemExit(main())
