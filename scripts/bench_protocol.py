#!/usr/bin/env python3
"""Protocol benchmark: every party in one process, every message serialized to bytes.

Wall time and process CPU time (``cpu_median``, ``time.process_time``: steadier on a shared
machine, and what issue 14's 0.12x target compares) of the whole protocol, all parties, like
the anchor bench in ../shared/bench/dkls-wasm (Silence Laboratories' DKLs23 WASM build): keygen (DKG), signing
(presign, online, sign) and proactive refresh (all n parties, new shares and new pairwise OT
state, as the anchor's ``--refresh-reps``). Prints a table and optionally writes JSON::

    {"config": {...}, "keygen": {"median": ms, "min": ms, "max": ms, "bytes": B}, ..., "refresh": {...}}

``refresh_samples`` holds a signature made with the refreshed shares (same public key), for
independent verification.

Bytes are payload bytes delivered per run (a broadcast counts once per receiver), as in the
anchor's "bytes delivered" column.

``--scheme ed25519`` / ``--scheme schnorr-secp256k1-bip340`` (issue 16) measures FROST instead:
keygen (the 4-round FROST DKG, all n parties), ``commit`` (RFC 9591 round one, all t signers),
``sign`` (round two: t signature shares, then ``aggregate``, which verifies every share and the
signature) and ``total`` (commit + sign), over random signer subsets. The default
``ecdsa-secp256k1`` runs and prints exactly what it did before.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crypto_core.combiner import combine
from crypto_core.dkg import DkgConfig, DkgParty
from crypto_core.keyshare import KeyShare
from crypto_core.local import RunStats, run
from crypto_core.params import LAMBDA_C, SUPPORTED_LAMBDA
from crypto_core.reshare import ReshareConfig, ReshareParty
from crypto_core.sign import PresignParty, SignConfig
from mpcnet.common.heap_tuning import keep_heap

SCHEMES = ("ecdsa-secp256k1", "ed25519", "schnorr-secp256k1-bip340")


def summarize(samples_ms: list[float], nbytes: int, cpu_ms: list[float] | None = None) -> dict[str, float | int]:
    """Median/min/max wall ms, bytes per run and repetitions; ``cpu_median`` (process CPU ms,
    the anchor's "CPU" column) when ``cpu_ms`` is given: steadier than wall time on a shared machine."""
    out: dict[str, float | int] = {
        "median": round(statistics.median(samples_ms), 3),
        "min": round(min(samples_ms), 3),
        "max": round(max(samples_ms), 3),
        "bytes": nbytes,
        "reps": len(samples_ms),
    }
    if cpu_ms:
        out["cpu_median"] = round(statistics.median(cpu_ms), 3)
    return out


def bench_keygen(t: int, n: int, reps: int, lambda_c: int = LAMBDA_C) -> tuple[dict[str, Any], list[dict[int, KeyShare]]]:
    times, nbytes, keys = [], 0, []
    for _ in range(reps):
        session = os.urandom(32)
        parties = {i: DkgParty(DkgConfig(session, t, n, i, b"", lambda_c)) for i in range(1, n + 1)}
        stats = RunStats()
        t0 = time.perf_counter()
        run(parties, stats=stats)
        times.append((time.perf_counter() - t0) * 1e3)
        nbytes = stats.bytes_delivered
        keys.append({i: p.result for i, p in parties.items() if p.result is not None})
    return summarize(times, nbytes), keys


def bench_refresh(t: int, n: int, keys: dict[int, KeyShare], reps: int) -> tuple[dict[str, Any], dict[int, KeyShare]]:
    """Proactive refresh (crypto_core.reshare, ``refresh=True``) of ``keys``, all ``n`` parties,
    ``reps`` times from the same epoch: new Shamir shares of the same secret and new pairwise OT
    and zero-share state, like the anchor's ``initKeyRotation``. Untimed checks: every new share
    is valid, has the same public key and the next epoch, and differs from the old one. Returns
    the timings and the last run's new shares."""
    times, cpu, nbytes = [], [], 0
    k0 = keys[1]
    pairs = tuple((i, i) for i in range(1, n + 1))
    new: dict[int, KeyShare] = {}
    for _ in range(reps):
        session = os.urandom(32)
        parties = {
            i: ReshareParty(
                ReshareConfig(
                    session, i, pairs, pairs, t, t, k0.public_key, k0.chain_code, k0.epoch, k0.key_label,
                    refresh=True, old_public_shares=k0.public_shares, lambda_c=k0.lambda_c,
                ),
                keys[i],
            )
            for i in range(1, n + 1)
        }
        stats = RunStats()
        c0, t0 = time.process_time(), time.perf_counter()
        run(parties, stats=stats)
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
        nbytes = stats.bytes_delivered
        new = {i: p.result for i, p in parties.items() if p.result is not None}
        if len(new) != n:
            raise AssertionError("refresh: a party ended without a new share")
        for i, ks in new.items():
            ks.validate()
            if ks.public_key != k0.public_key or ks.epoch != k0.epoch + 1 or ks.secret_share == keys[i].secret_share:
                raise AssertionError(f"refresh: party {i}'s new share is not a refreshed share of the key")
    return summarize(times, nbytes, cpu), new


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threshold", "-t", type=int, default=2)
    ap.add_argument("--parties", "-n", type=int, default=3)
    ap.add_argument("--keygens", type=int, default=3, help="DKG repetitions")
    ap.add_argument("--signatures", type=int, default=20, help="signing repetitions (random signer subsets)")
    ap.add_argument("--refreshes", type=int, default=3, help="refresh repetitions (all n parties)")
    ap.add_argument("--json", type=Path, help="write the figures as JSON to this path")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up signatures")
    ap.add_argument(
        "--lambda-c", type=int, default=LAMBDA_C, choices=SUPPORTED_LAMBDA,
        help="base OTs per ordered pair (security parameter of the OT extension)",
    )
    ap.add_argument("--scheme", choices=SCHEMES, default=SCHEMES[0], help="key scheme (FROST for the Schnorr ones)")
    args = ap.parse_args(argv)
    t, n = args.threshold, args.parties
    if not 2 <= t <= n:
        ap.error("need 2 <= threshold <= parties")
    if args.keygens < 1:
        ap.error("--keygens must be at least 1")
    heap_kept = keep_heap()  # as mpc-node does at start; MPCNET_HEAP_TUNING=0 for glibc's defaults
    if args.scheme != SCHEMES[0]:
        return main_frost(args)

    result: dict[str, Any] = {
        "config": {
            "threshold": t,
            "parties": n,
            "keygens": args.keygens,
            "signatures": args.signatures,
            "refreshes": args.refreshes,
            "lambda_c": args.lambda_c,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "heap_tuning": heap_kept,
        }
    }
    print(f"bench_protocol: {t}-of-{n}, lambda_c={args.lambda_c}, all parties in one process, messages serialized", flush=True)
    result["keygen"], keys = bench_keygen(t, n, args.keygens, args.lambda_c)

    if args.signatures > 0:
        result.update(bench_signing(t, n, keys[-1], args.signatures, args.warmup))
    if args.refreshes > 0:
        result["refresh"], fresh = bench_refresh(t, n, keys[-1], args.refreshes)
        if args.signatures > 0:  # the refreshed shares sign under the same key (untimed)
            result["refresh_samples"] = bench_signing(t, n, fresh, 1, 0)["samples"]

    rows: list[tuple[str, dict[str, Any]]] = [(k, v) for k, v in result.items() if isinstance(v, dict) and "median" in v]
    print(f"{'phase':<10}{'reps':>6}{'median ms':>12}{'min ms':>10}{'max ms':>10}{'cpu ms':>10}{'bytes/run':>12}")
    for name, v in rows:
        cpu = f"{v['cpu_median']:>10.2f}" if "cpu_median" in v else f"{'':>10}"
        print(f"{name:<10}{v['reps']:>6}{v['median']:>12.2f}{v['min']:>10.2f}{v['max']:>10.2f}{cpu}{v['bytes']:>12,}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def bench_signing(t: int, n: int, keys: dict[int, KeyShare], reps: int, warmup: int) -> dict[str, Any]:
    """Presign (3 rounds), online (1 round: shares + combine + verify) and their sum, over
    random signer subsets. Returns the phases and independently checkable samples."""
    pick = random.SystemRandom()
    pre_ms: list[float] = []
    on_ms: list[float] = []
    total_ms: list[float] = []
    pre_cpu: list[float] = []  # process CPU ms (time.process_time), the anchor comparison's measure
    on_cpu: list[float] = []
    total_cpu: list[float] = []
    pre_bytes = on_bytes = 0
    samples: list[dict[str, Any]] = []
    for rep in range(warmup + reps):
        signers = tuple(sorted(pick.sample(range(1, n + 1), t)))
        session = os.urandom(32)
        digest = os.urandom(32)
        parties = {i: PresignParty(keys[i], SignConfig(session, signers)) for i in signers}
        stats = RunStats()
        c0, t0 = time.process_time(), time.perf_counter()
        run(parties, stats=stats)
        c1, t1 = time.process_time(), time.perf_counter()
        shares = {}
        share_bytes = 0
        for i, p in parties.items():
            pre = p.result
            assert pre is not None
            pre.mark_used()  # a node persists this tombstone before the share leaves it
            share = pre.signature_share(digest, key_id=keys[i].key_id, epoch=keys[i].epoch)
            share_bytes += len(share.to_bytes(session)) * (t - 1)  # broadcast to the other signers
            shares[i] = share
        sig = combine(shares, digest, signers=signers, public_key=keys[signers[0]].public_key)
        c2, t2 = time.process_time(), time.perf_counter()
        if rep < warmup:
            continue
        pre_ms.append((t1 - t0) * 1e3)
        on_ms.append((t2 - t1) * 1e3)
        total_ms.append((t2 - t0) * 1e3)
        pre_cpu.append((c1 - c0) * 1e3)
        on_cpu.append((c2 - c1) * 1e3)
        total_cpu.append((c2 - c0) * 1e3)
        pre_bytes, on_bytes = stats.bytes_delivered, share_bytes
        samples.append(
            {
                "public_key": sig.public_key.encode().hex(),
                "digest": digest.hex(),
                "signature_der": sig.der().hex(),
                "recovery_id": sig.recovery_id,
                "signers": list(signers),
            }
        )
    return {
        "presign": summarize(pre_ms, pre_bytes, pre_cpu),
        "online": summarize(on_ms, on_bytes, on_cpu),
        "sign": summarize(total_ms, pre_bytes + on_bytes, total_cpu),
        "samples": samples,
    }


def main_frost(args: argparse.Namespace) -> int:
    """FROST keygen and signing figures for ``args.scheme`` (see the module docstring)."""
    from crypto_core.frost import signing
    from crypto_core.frost.local import run_frost_dkg

    scheme, t, n = args.scheme, args.threshold, args.parties
    result: dict[str, Any] = {
        "config": {
            "scheme": scheme, "threshold": t, "parties": n, "keygens": args.keygens, "signatures": args.signatures,
            "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
        }
    }
    print(f"bench_protocol: {scheme} (FROST) {t}-of-{n}, all parties in one process, messages serialized", flush=True)
    times, cpus, nbytes, keys = [], [], 0, []
    for _ in range(args.keygens):
        stats = RunStats()
        c0, t0 = time.process_time(), time.perf_counter()
        keys = run_frost_dkg(scheme, t, n, stats=stats)
        times.append((time.perf_counter() - t0) * 1e3)
        cpus.append((time.process_time() - c0) * 1e3)
        nbytes = stats.bytes_delivered
    result["keygen"] = summarize(times, nbytes, cpus)
    if args.signatures > 0:
        pick = random.SystemRandom()
        phases: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in ("commit", "sign", "total")}
        samples: list[dict[str, Any]] = []
        e = len(keys[0].public_key)
        commit_bytes = sign_bytes = 0
        for rep in range(args.warmup + args.signatures):
            signers = sorted(pick.sample(range(1, n + 1), t))
            message = os.urandom(32)
            c0, t0 = time.process_time(), time.perf_counter()
            nonces, comms = {}, []
            for i in signers:
                nonces[i], comm = signing.commit(scheme, keys[i - 1].secret_share, identifier=i)
                comms.append(comm)
            c1, t1 = time.process_time(), time.perf_counter()
            package = signing.SigningPackage(scheme, message, tuple(comms))
            shares = {i: signing.sign_share(keys[i - 1], nonces[i], package) for i in signers}
            sig = signing.aggregate(keys[0].public(), package, shares)
            c2, t2 = time.process_time(), time.perf_counter()
            commit_bytes = t * 2 * e  # each signer's two nonce commitments, to the coordinator
            sign_bytes = t * (t * 2 * e + len(message)) + t * 32  # package to every signer, shares back
            if rep < args.warmup:
                continue
            spans = {"commit": (t1 - t0, c1 - c0), "sign": (t2 - t1, c2 - c1), "total": (t2 - t0, c2 - c0)}
            for k, (wall_s, cpu_s) in spans.items():
                phases[k][0].append(wall_s * 1e3)
                phases[k][1].append(cpu_s * 1e3)
            samples.append({"public_key": keys[0].public_key.hex(), "message": message.hex(), "signature": sig.hex(),
                            "signing_key": signing.signing_key(scheme, keys[0].public_key).hex(), "signers": signers})
        sizes = {"commit": commit_bytes, "sign": sign_bytes, "total": commit_bytes + sign_bytes}
        for k, (wall_ms, cpu_ms) in phases.items():
            result[k] = summarize(wall_ms, sizes[k], cpu_ms)
        result["samples"] = samples
    rows = [(k, v) for k, v in result.items() if isinstance(v, dict) and "median" in v]
    print(f"{'phase':<10}{'reps':>6}{'median ms':>12}{'min ms':>10}{'max ms':>10}{'cpu ms':>10}{'bytes/run':>12}")
    for name, v in rows:
        print(f"{name:<10}{v['reps']:>6}{v['median']:>12.2f}{v['min']:>10.2f}{v['max']:>10.2f}"
              f"{v['cpu_median']:>10.2f}{v['bytes']:>12,}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
