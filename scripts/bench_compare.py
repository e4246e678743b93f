#!/usr/bin/env python3
"""Side-by-side benchmark against the anchor: Silence Laboratories' DKLs23 WASM build.

Runs ../shared/bench/dkls-wasm/bench.mjs (copied into the git-ignored .bench/ folder and
installed there with ``npm ci``; it is a yardstick only, never a dependency of ours: its licence
forbids that) and then scripts/bench_protocol.py's measurements for the same configurations,
in one run on this machine, and prints our time and bytes as a ratio of the anchor's.

    scripts/bench_compare.py --configs 2/3,3/5,5/9 --keygens 2 --signatures 20
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_protocol  # noqa: E402

ANCHOR_SRC = ROOT.parent / "shared" / "bench" / "dkls-wasm"
ANCHOR_DIR = ROOT / ".bench" / "dkls-wasm"


def run_anchor(configs: str, keygens: int, signatures: int) -> dict[str, Any]:
    if not (ANCHOR_SRC / "bench.mjs").exists():
        raise SystemExit(f"anchor bench not found at {ANCHOR_SRC}")
    ANCHOR_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("bench.mjs", "package.json", "package-lock.json"):
        shutil.copyfile(ANCHOR_SRC / name, ANCHOR_DIR / name)
    if not (ANCHOR_DIR / "node_modules").exists():
        print("== npm ci (anchor, into .bench/)", flush=True)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=ANCHOR_DIR, check=True)
    out = ANCHOR_DIR / "results.json"
    cmd = [
        "node", "bench.mjs", "--passes", "1", "--keygen-reps", str(keygens), "--sign-reps", str(signatures),
        "--refresh-reps", "1", "--configs", configs, "--out", str(out),
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
            "presign": {"median": cfg["sign"]["presign"]["wall"]["median"], "bytes": cfg["sign"]["presign"]["bytesDelivered"]},
            "online": {"median": cfg["sign"]["final"]["wall"]["median"], "bytes": cfg["sign"]["final"]["bytesDelivered"]},
            "sign": {"median": cfg["sign"]["total"]["wall"]["median"], "bytes": cfg["sign"]["total"]["bytesDelivered"]},
        }
    return res


def run_ours(t: int, n: int, keygens: int, signatures: int, lambda_c: int) -> dict[str, Any]:
    print(f"== ours: {t}-of-{n}, lambda_c={lambda_c}", flush=True)
    kg, keys = bench_protocol.bench_keygen(t, n, keygens, lambda_c)
    res: dict[str, Any] = {"keygen": kg}
    res.update(bench_protocol.bench_signing(t, n, keys[-1], signatures, warmup=2))
    res.pop("samples")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="2/3,3/5,5/9")
    ap.add_argument("--keygens", type=int, default=2)
    ap.add_argument("--signatures", type=int, default=20)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--lambda-c", type=int, default=bench_protocol.LAMBDA_C, choices=bench_protocol.SUPPORTED_LAMBDA)
    ap.add_argument("--skip-anchor", type=Path, help="reuse an earlier --json output's anchor figures")
    args = ap.parse_args()
    configs = [tuple(map(int, c.split("/"))) for c in args.configs.split(",")]
    # interleaved per configuration (anchor, then ours), so that load drifting on a shared
    # machine does not favour whichever side runs first
    anchor: dict[str, Any] = json.loads(args.skip_anchor.read_text())["anchor"] if args.skip_anchor else {}
    ours: dict[str, Any] = {}
    for t, n in configs:
        if not args.skip_anchor:
            anchor.update(run_anchor(f"{t}/{n}", args.keygens, args.signatures))
        ours[f"{t}/{n}"] = run_ours(t, n, args.keygens, args.signatures, args.lambda_c)

    print()
    print(f"{'config':<7}{'phase':<9}{'ours ms':>10}{'anchor ms':>11}{'ratio':>8}{'ours bytes':>13}{'anchor bytes':>14}{'ratio':>8}")
    for key in ours:
        for phase in ("keygen", "presign", "online", "sign"):
            o, a = ours[key][phase], anchor.get(key, {}).get(phase)
            if a is None:
                continue
            print(
                f"{key:<7}{phase:<9}{o['median']:>10.1f}{a['median']:>11.1f}{o['median'] / a['median']:>8.3f}"
                f"{o['bytes']:>13,}{a['bytes']:>14,}{o['bytes'] / a['bytes']:>8.3f}"
            )
    if args.json:
        args.json.write_text(json.dumps({"anchor": anchor, "ours": ours, "lambda_c": args.lambda_c}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
