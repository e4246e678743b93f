#!/usr/bin/env python3
"""The transport floor and the per-signature CPU floor on this machine (issue 14).

**RPC floor.** A trivial unary RPC over the project's mutual TLS (a throw-away CA and P-256
certificates made by :mod:`mpcnet.common.pki`, credentials from its ``server_credentials`` and
``channel_credentials``, the project's ``SERVER_OPTIONS`` / ``CHANNEL_OPTIONS``), served by a
separate server process and called from this process by ``c`` threads sharing one channel (as
the SDK and the coordinator's fan-out do). The method is the real ``mpc.v1.Node/ListPresignatures``
(a 32-byte key id in, an empty answer out). Per call: client CPU, server CPU (each process's own
``getrusage``: user + system, all threads; the server reports its figure over a side RPC), wall
time and calls per second. Server modes:

- ``sync``: ``grpc.server`` with a ``ThreadPoolExecutor`` sized like the coordinator's (workers
  48 + streams 256 + requests 64; ``maximum_concurrent_rpcs`` 512; ``--profile node``: 16 + 16,
  144), GC tuned as the servers tune it (``mpcnet.common.gc_tuning``);
- ``aio``: ``grpc.aio.server`` with ``async`` handlers, the same credentials and options.

Handlers: ``bare`` (parse, answer), ``wrapped`` (the project's ``service_handler`` without a role
check) or ``project`` (what every product RPC pays: ``service_handler`` and
``audited_role_check`` -- the caller's certificate fingerprint and role from the auth context; in
``aio`` ``wrapped`` is ``bare`` and ``project`` an async wrapper calling the same check).

``--variants`` adds option sets (on top of the project's, both sides unless said), measured with
the sync project server at ``--variant-concurrency`` in ``--variant-pairs`` A/B pairs (a base
server and a variant server side by side, the client alternating batches between them, which goes
first alternating too; reported: the median of the per-pair CPU ratios):
``throughput`` (``grpc.optimization_target``), ``nobdp`` (``grpc.http2.bdp_probe`` 0),
``nokeepalive`` (no keepalive options), ``streams`` (server ``grpc.max_concurrent_streams`` 256),
``reuseport`` (server ``grpc.so_reuseport`` 1), ``nocompress`` (``grpc.default_compression_algorithm``
0), ``minimal`` (``grpc.minimal_stack`` 1: drops filters, changes behaviour: for scale only),
``all`` (throughput + nobdp + nokeepalive + streams), ``insecure`` (no TLS: what mTLS costs; the
bare handler on both sides of that pair, since there is no certificate to check); ``base`` against
itself is the A/A control: its ratio's distance from 1 is the noise of the comparison.

**Micro floors** (this process, ``time.process_time`` per operation): an fsync'd SQLite commit
(``open_database``: WAL, ``synchronous=FULL``; ``write_transaction`` of one 256-byte row) in
``--db-dir``; Ed25519 sign and verify (``cryptography``) of a real approval message (a 2-approval
:class:`governance.approval.ApprovalBundle` of a path-m/0 request); the bundle's decode
(``ApprovalBundle.from_bytes``, what each signer does); ECDSA secp256k1 sign and verify
(``coincurve``, 32-byte digest); the protobuf encode and decode of a ``SignPresignedRequest``
(that bundle, ids, path) and a ``SignPresignedResponse`` (an Envelope with a 202-byte
re-randomised share and a 64-byte signature).

**Floor per signature** (2-of-3, one-round path): 5 unary calls (SubmitSignRequest, two
DecideSignRequest, two SignPresigned) at concurrency 16, client + server CPU, sync project
server; plus ``--coordinator-commits`` + t x ``--signer-commits`` commits; plus ``--approvals`` x
(1 + t) Ed25519 verifications. The extended floor adds the approvers' signatures (client), the
signers' share-envelope signatures and the coordinator's checks of them, the final ECDSA verify,
the bundle decodes and the SignPresigned protobuf work. Ceiling = ``--cores`` / floor.
Every figure is the median over ``--rounds`` rounds; ``uptime`` is printed with them::

    .venv/bin/python scripts/bench_rpc_floor.py [--rounds 3] [--calls 2000] [--json] [--out FILE]

The machine is shared: compare CPU per call, not wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from mpcnet.common import pki  # noqa: E402
from mpcnet.common.rpc import CHANNEL_OPTIONS, SERVER_OPTIONS, audited_role_check, service_handler  # noqa: E402
from mpcnet.wire.mpc.v1 import node_pb2  # noqa: E402

METHOD = "ListPresignatures"
SERVICE = node_pb2.DESCRIPTOR.services_by_name["Node"]
PATH = f"/{SERVICE.full_name}/{METHOD}"
CPU_PATH = "/floor.Bench/Cpu"  # side RPC: the server process's CPU seconds so far (text)
LEVELS = (1, 4, 16, 64)
MODES = ("sync", "aio")
HANDLERS = ("bare", "wrapped", "project")
PROFILES = {"coordinator": (48 + 256 + 64, 48 * 4 + 256 + 64), "node": (16 + 16, 16 * 8 + 16)}
"""Thread-pool size and ``maximum_concurrent_rpcs`` of the project's servers (coordinator/main.py,
mpc_node/main.py with the configs' defaults)."""

VARIANTS: dict[str, tuple[list[tuple[str, Any]], list[tuple[str, Any]], tuple[str, ...]]] = {
    # name: (extra server options, extra channel options, option names removed on both sides)
    "base": ([], [], ()),
    "throughput": ([("grpc.optimization_target", "throughput")], [("grpc.optimization_target", "throughput")], ()),
    "nobdp": ([("grpc.http2.bdp_probe", 0)], [("grpc.http2.bdp_probe", 0)], ()),
    "nokeepalive": ([], [], ("grpc.keepalive_time_ms", "grpc.keepalive_timeout_ms")),
    "streams": ([("grpc.max_concurrent_streams", 256)], [], ()),
    "reuseport": ([("grpc.so_reuseport", 1)], [], ("grpc.so_reuseport",)),
    "nocompress": ([("grpc.default_compression_algorithm", 0)], [("grpc.default_compression_algorithm", 0)], ()),
    "minimal": ([("grpc.minimal_stack", 1)], [("grpc.minimal_stack", 1)], ()),
    "insecure": ([], [], ()),  # no TLS at all (a reference for what mTLS costs; bare handler: no certificate to check)
    "all": (
        [("grpc.optimization_target", "throughput"), ("grpc.http2.bdp_probe", 0), ("grpc.max_concurrent_streams", 256)],
        [("grpc.optimization_target", "throughput"), ("grpc.http2.bdp_probe", 0)],
        ("grpc.keepalive_time_ms", "grpc.keepalive_timeout_ms"),
    ),
}


def options(base: Sequence[tuple[str, Any]], variant: str, server: bool) -> list[tuple[str, Any]]:
    """``base`` with ``variant``'s changes (:data:`VARIANTS`) for the server or the channel."""
    extra_server, extra_channel, removed = VARIANTS[variant]
    extra = extra_server if server else extra_channel
    names = set(removed) | {k for k, _ in extra}
    return [(k, v) for k, v in base if k not in names] + list(extra)


def cpu_s() -> float:
    """This process's CPU seconds so far (user + system, all threads)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


# --- TLS material ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    """Paths of a throw-away CA, a node-role server certificate and a coordinator-role client
    certificate (all P-256, as :func:`mpcnet.common.pki.issue_cert` makes them)."""

    ca: Path
    server: pki.CertPaths
    client: pki.CertPaths


def make_tls(directory: Path) -> Tls:
    ca = pki.create_ca(directory / "ca")
    server = pki.issue_cert(ca, directory, "node-1", role="node", server=True, hosts=("localhost", "127.0.0.1"))
    client = pki.issue_cert(ca, directory, "coordinator", role="coordinator")
    return Tls(ca.cert, server, client)


def tls_at(directory: Path) -> Tls:
    ca = directory / "ca" / pki.CA_CERT_FILE
    return Tls(ca, pki.CertPaths(directory / "node-1.pem", directory / "node-1.key"),
               pki.CertPaths(directory / "coordinator.pem", directory / "coordinator.key"))


# --- the server process ----------------------------------------------------------------------


class _NoAudit:
    def append(self, actor: str, action: str, *, outcome: str, details: dict[str, Any]) -> None:
        return None


def _authorize() -> Callable[[Any, str], None]:
    return audited_role_check(SERVICE.full_name, lambda m: ("coordinator",), _NoAudit(), refused=frozenset)


class _Servicer:
    def ListPresignatures(self, request: Any, context: Any) -> Any:
        return node_pb2.ListPresignaturesResponse()


def _cpu_handler() -> grpc.GenericRpcHandler:
    def cpu(request: bytes, context: Any) -> bytes:
        return repr(cpu_s()).encode()

    return grpc.method_handlers_generic_handler("floor.Bench", {"Cpu": grpc.unary_unary_rpc_method_handler(cpu)})


def _sync_handler(handler: str) -> grpc.GenericRpcHandler:
    if handler in ("project", "wrapped"):
        return service_handler(SERVICE, node_pb2, _Servicer(), authorize=_authorize() if handler == "project" else None)
    answer = node_pb2.ListPresignaturesResponse()
    h: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(
        lambda req, ctx: answer,
        request_deserializer=node_pb2.ListPresignaturesRequest.FromString,
        response_serializer=lambda m: m.SerializeToString(),
    )
    return grpc.method_handlers_generic_handler(SERVICE.full_name, {METHOD: h})


def _aio_handlers(handler: str) -> tuple[grpc.GenericRpcHandler, grpc.GenericRpcHandler]:
    answer = node_pb2.ListPresignaturesResponse()
    authorize = _authorize() if handler == "project" else None

    async def call(req: Any, ctx: Any) -> Any:
        if authorize is not None:
            authorize(ctx, METHOD)
        return answer

    async def cpu(request: bytes, context: Any) -> bytes:
        return repr(cpu_s()).encode()

    h: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(
        call, request_deserializer=node_pb2.ListPresignaturesRequest.FromString,
        response_serializer=lambda m: m.SerializeToString(),
    )
    return (grpc.method_handlers_generic_handler(SERVICE.full_name, {METHOD: h}),
            grpc.method_handlers_generic_handler("floor.Bench", {"Cpu": grpc.unary_unary_rpc_method_handler(cpu)}))


def serve(mode: str, handler: str, variant: str, profile: str, tls_dir: Path) -> int:
    """The server process: print ``PORT <n>``, serve until stdin closes."""
    from mpcnet.common.gc_tuning import tune_for_server

    tls = tls_at(tls_dir)
    creds = pki.server_credentials(tls.server, tls.ca) if variant != "insecure" else None
    opts = options(SERVER_OPTIONS, variant, server=True)
    threads, max_rpcs = PROFILES[profile]
    if mode == "sync":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rpc"),
                             options=opts, maximum_concurrent_rpcs=max_rpcs)
        server.add_generic_rpc_handlers((_sync_handler(handler), _cpu_handler()))
        port = server.add_secure_port("127.0.0.1:0", creds) if creds else server.add_insecure_port("127.0.0.1:0")
        tune_for_server()
        server.start()
        print(f"PORT {port}", flush=True)
        sys.stdin.read()
        server.stop(0).wait()
        return 0

    async def main() -> None:
        server = grpc.aio.server(options=opts, maximum_concurrent_rpcs=max_rpcs)
        server.add_generic_rpc_handlers(_aio_handlers(handler))
        port = server.add_secure_port("127.0.0.1:0", creds) if creds else server.add_insecure_port("127.0.0.1:0")
        tune_for_server()
        await server.start()
        print(f"PORT {port}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop(0)

    asyncio.run(main())
    return 0


# --- the client ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallFigures:
    """One batch of calls at one concurrency: CPU microseconds per call in the client and the
    server process, wall microseconds per call (batch wall time / calls) and calls per second."""

    client_cpu_us: float
    server_cpu_us: float
    wall_us: float
    calls_per_s: float

    @property
    def cpu_us(self) -> float:
        return self.client_cpu_us + self.server_cpu_us


class Server:
    """A server process (:func:`serve`) and a channel to it; a context manager."""

    def __init__(self, mode: str, handler: str, variant: str, profile: str, tls: Tls, tls_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", mode, "--handler", handler, "--variant-name",
             variant, "--profile", profile, "--tls-dir", str(tls_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "PORT":
            self.close()
            raise RuntimeError(f"server ({mode}, {handler}, {variant}) did not start")
        target, opts = f"127.0.0.1:{line[1]}", options(CHANNEL_OPTIONS, variant, server=False)
        self.channel = (grpc.insecure_channel(target, options=opts) if variant == "insecure"
                        else grpc.secure_channel(target, pki.channel_credentials(tls.client, tls.ca), options=opts))
        self.call: grpc.UnaryUnaryMultiCallable[Any, Any] = self.channel.unary_unary(
            PATH, request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=node_pb2.ListPresignaturesResponse.FromString,
        )
        self._cpu: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(CPU_PATH)
        self.request = node_pb2.ListPresignaturesRequest(key_id=os.urandom(32))

    def server_cpu_s(self) -> float:
        return float(self._cpu(b"", timeout=30))

    def batch(self, concurrency: int, calls: int) -> CallFigures:
        per_thread = max(1, calls // concurrency)
        total = per_thread * concurrency
        start = threading.Barrier(concurrency + 1)
        errors: list[BaseException] = []

        def worker() -> None:
            start.wait()
            try:
                for _ in range(per_thread):
                    self.call(self.request, timeout=30)
            except BaseException as e:  # reported after the batch
                errors.append(e)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
        for t in threads:
            t.start()
        s0, c0, w0 = self.server_cpu_s(), cpu_s(), time.perf_counter()
        start.wait()
        for t in threads:
            t.join()
        w1, c1, s1 = time.perf_counter(), cpu_s(), self.server_cpu_s()
        if errors:
            raise RuntimeError(f"{len(errors)} calls failed: {errors[0]!r}")
        wall = w1 - w0
        return CallFigures((c1 - c0) / total * 1e6, (s1 - s0) / total * 1e6, wall / total * 1e6, total / wall)

    def close(self) -> None:
        if getattr(self, "channel", None) is not None:
            self.channel.close()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rpc_runs(args: argparse.Namespace, tls: Tls, tls_dir: Path) -> dict[str, dict[int, list[CallFigures]]]:
    """``{config name: {concurrency: [figures per round]}}``; configs run interleaved per round."""
    configs: list[tuple[str, str, str, tuple[int, ...]]] = []  # (mode, handler, variant, levels)
    for mode in args.modes:
        for handler in args.handlers:
            if (mode, handler) == ("aio", "wrapped"):
                continue  # the same as aio bare
            wanted = set(args.concurrency)
            if (mode, handler) == ("sync", "project"):
                wanted.add(args.floor_concurrency)  # the floor's figure
            configs.append((mode, handler, "base", tuple(sorted(wanted))))
    if not any(c[:2] == ("sync", "project") for c in configs):
        configs.append(("sync", "project", "base", (args.floor_concurrency,)))
    out: dict[str, dict[int, list[CallFigures]]] = {f"{m}/{h}/{v}": {} for m, h, v, _ in configs}
    for r in range(args.rounds):
        order = configs[::-1] if r % 2 else configs  # interleave: no config always runs first (or last)
        for mode, handler, variant, levels in order:
            name = f"{mode}/{handler}/{variant}"
            for level, fig in one_server(args, mode, handler, variant, levels, tls, tls_dir).items():
                out[name].setdefault(level, []).append(fig)
            print(f"  round {r + 1}/{args.rounds}: {name} done", file=sys.stderr, flush=True)
    return out


def one_server(
    args: argparse.Namespace, mode: str, handler: str, variant: str, levels: Sequence[int], tls: Tls, tls_dir: Path
) -> dict[int, CallFigures]:
    """Start a server, warm it up, measure a batch at each of ``levels``, stop it."""
    with Server(mode, handler, variant, args.profile, tls, tls_dir) as srv:
        srv.batch(max(levels), max(args.warmup, max(levels)))  # handshake, threads, caches
        return {level: srv.batch(level, args.calls) for level in levels}


def variant_pairs(args: argparse.Namespace, tls: Tls, tls_dir: Path) -> dict[str, list[tuple[CallFigures, CallFigures]]]:
    """``{variant: [(base, variant) figures per pair]}``: a base and a variant server (sync, the
    :func:`pair_handler`) run side by side and the client alternates batches at
    ``--variant-concurrency`` between them, ``--variant-pairs`` pairs, alternating which goes first
    (so a change in the machine's load falls on both within a second or two)."""
    level = args.variant_concurrency
    out: dict[str, list[tuple[CallFigures, CallFigures]]] = {v: [] for v in args.variants}
    for variant in args.variants:
        handler = pair_handler(variant)
        with Server("sync", handler, "base", args.profile, tls, tls_dir) as base, \
                Server("sync", handler, variant, args.profile, tls, tls_dir) as other:
            for srv in (base, other):
                srv.batch(level, max(args.warmup, level))
            for i in range(args.variant_pairs):
                if i % 2 == 0:
                    a = base.batch(level, args.calls)
                    b = other.batch(level, args.calls)
                else:
                    b = other.batch(level, args.calls)
                    a = base.batch(level, args.calls)
                out[variant].append((a, b))
        print(f"  variant {variant}: {args.variant_pairs} pairs done", file=sys.stderr, flush=True)
    return out


def pair_handler(variant: str) -> str:
    """The handler a variant is compared with: ``project``, but ``bare`` without TLS."""
    return "bare" if variant == "insecure" else "project"


def summarize_pairs(pairs: dict[str, list[tuple[CallFigures, CallFigures]]]) -> dict[str, dict[str, Any]]:
    """Per variant: medians of base and variant CPU per call, and the median of the per-pair
    ratios variant / base (what the comparison rests on)."""
    out: dict[str, dict[str, Any]] = {}
    for variant, ps in pairs.items():
        ratios = [v.cpu_us / b.cpu_us for b, v in ps]
        out[variant] = {
            "handler": pair_handler(variant),
            "base_cpu_us": round(median([b.cpu_us for b, _ in ps]), 1),
            "variant_cpu_us": round(median([v.cpu_us for _, v in ps]), 1),
            "base_server_cpu_us": round(median([b.server_cpu_us for b, _ in ps]), 1),
            "variant_server_cpu_us": round(median([v.server_cpu_us for _, v in ps]), 1),
            "ratio_median": round(median(ratios), 3),
            "ratios": [round(x, 3) for x in ratios],
            "pairs": len(ps),
        }
    return out


# --- micro floors ----------------------------------------------------------------------------


def per_op_ms(fn: Callable[[], object], n: int) -> tuple[float, float]:
    """CPU and wall milliseconds per call of ``fn``, over ``n`` calls."""
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        fn()
    return (time.process_time() - c0) / n * 1e3, (time.perf_counter() - w0) / n * 1e3


def approval_material() -> tuple[Any, bytes, bytes, Any, bytes]:
    """A real 2-approval bundle of a path-m/0 request: ``(bundle, its encoding, one approval's
    signed message, that approver's private key, its signature)``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from governance.approval import ApprovalBundle, Decision, SigningRequest, _approval_message, sign_approval

    now = int(time.time() * 1000)
    req = SigningRequest(
        request_id="bench-floor-000001", key_id=os.urandom(32), digest=os.urandom(32), derivation_path=(0,),
        requester="requester1", description="transfer 0.5 BTC to cold storage (bench)", created_at_ms=now,
        expires_at_ms=now + 3_600_000, policy_version=1, policy_digest=os.urandom(32),
    )
    keys = {name: Ed25519PrivateKey.generate() for name in ("approver1", "approver2")}
    approvals = tuple(sign_approval(req, name, k, Decision.APPROVE) for name, k in keys.items())
    bundle = ApprovalBundle(req, approvals)
    message = _approval_message(req.encode(), "approver1", Decision.APPROVE)
    return bundle, bundle.to_bytes(), message, keys["approver1"], approvals[0].signature


def micro_once(n: int, db_dir: Path) -> dict[str, tuple[float, float]]:
    """One round of every micro floor: ``{name: (cpu ms, wall ms) per operation}``."""
    import coincurve
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: F401

    from governance.approval import ApprovalBundle
    from mpcnet.common.stores.sqlite import open_database, write_transaction
    from mpcnet.wire.mpc.v1 import common_pb2

    out: dict[str, tuple[float, float]] = {}
    d = Path(tempfile.mkdtemp(prefix="floor-db-", dir=db_dir))
    try:
        conn = open_database(d / "floor.db")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
        row = os.urandom(256)

        def commit() -> None:
            with write_transaction(conn) as c:
                c.execute("INSERT INTO t (v) VALUES (?)", (row,))

        commit()
        out["sqlite_commit"] = per_op_ms(commit, n)
        conn.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)

    bundle, encoded, message, key, signature = approval_material()
    pub = key.public_key()
    out["ed25519_sign"] = per_op_ms(lambda: key.sign(message), n)
    out["ed25519_verify"] = per_op_ms(lambda: pub.verify(signature, message), n)
    out["approval_bundle_decode"] = per_op_ms(lambda: ApprovalBundle.from_bytes(encoded), n)

    sk = coincurve.PrivateKey()
    digest = os.urandom(32)
    der = sk.sign(digest, hasher=None)
    pk = coincurve.PublicKey(sk.public_key.format())
    out["ecdsa_sign"] = per_op_ms(lambda: sk.sign(digest, hasher=None), n)
    out["ecdsa_verify"] = per_op_ms(lambda: pk.verify(der, digest, hasher=None), n)

    share = os.urandom(202)  # a re-randomised SignatureShare's length (crypto_core.combiner.SHARE_LEN)

    def request() -> bytes:
        return node_pb2.SignPresignedRequest(
            presig_id=digest, key_id=bundle.request.key_id, epoch=1, signers=[1, 2], derivation_path=[0],
            digest=bundle.request.digest, request_id=bundle.request.request_id, approval_bundle=encoded, attempt=1,
        ).SerializeToString()

    def response() -> bytes:
        env = common_pb2.Envelope(session_id=digest, round=4, sender=1, receiver=0, payload=share, signature=share[:64])
        return node_pb2.SignPresignedResponse(share=env, signer=1).SerializeToString()

    req_bytes, resp_bytes = request(), response()
    out["signpresigned_request_encode"] = per_op_ms(request, n)
    out["signpresigned_request_decode"] = per_op_ms(lambda: node_pb2.SignPresignedRequest.FromString(req_bytes), n)
    out["signpresigned_response_encode"] = per_op_ms(response, n)
    out["signpresigned_response_decode"] = per_op_ms(lambda: node_pb2.SignPresignedResponse.FromString(resp_bytes), n)
    out["_sizes"] = (float(len(req_bytes)), float(len(resp_bytes)))
    return out


def micro_runs(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    rounds = [micro_once(args.micro_n, args.db_dir) for _ in range(args.rounds)]
    out: dict[str, dict[str, float]] = {}
    for name in rounds[0]:
        if name == "_sizes":
            out["sizes_bytes"] = {"signpresigned_request": rounds[0][name][0], "signpresigned_response": rounds[0][name][1]}
            continue
        out[name] = {"cpu_ms": round(median([r[name][0] for r in rounds]), 4),
                     "wall_ms": round(median([r[name][1] for r in rounds]), 4)}
    return out


# --- the floor -------------------------------------------------------------------------------


def floor(args: argparse.Namespace, rpc: dict[str, dict[str, Any]], micro: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The CPU floor per 2-of-3 signature on the one-round path (see the module docstring)."""
    t = args.t
    level = str(args.floor_concurrency)
    base = rpc.get("sync/project/base", {}).get(level)
    if base is None:
        return {"note": f"needs the sync/project/base RPC figures at concurrency {level}"}
    call_ms = base["cpu_us"] / 1000
    calls = 3 + t
    cpu = {k: v["cpu_ms"] for k, v in micro.items() if "cpu_ms" in v}
    commits = args.coordinator_commits + t * args.signer_commits
    verifications = args.approvals * (1 + t)
    parts = {
        "rpc_ms": calls * call_ms,
        "commits_ms": commits * cpu["sqlite_commit"],
        "approval_verifications_ms": verifications * cpu["ed25519_verify"],
    }
    brief = sum(parts.values())
    extra = {
        "approver_signatures_ms": args.approvals * cpu["ed25519_sign"],
        "share_envelopes_sign_and_verify_ms": t * (cpu["ed25519_sign"] + cpu["ed25519_verify"]),
        "bundle_decodes_ms": (1 + t) * cpu["approval_bundle_decode"],
        "final_ecdsa_verify_ms": cpu["ecdsa_verify"],
        "signpresigned_protobuf_ms": t * (cpu["signpresigned_request_encode"] + cpu["signpresigned_request_decode"]
                                          + cpu["signpresigned_response_encode"] + cpu["signpresigned_response_decode"]),
    }
    extended = brief + sum(extra.values())
    out: dict[str, Any] = {
        "t": t, "cores": args.cores, "rpc_concurrency": args.floor_concurrency, "unary_calls": calls,
        "rpc_cpu_ms_per_call": round(call_ms, 4), "commits": commits, "approval_verifications": verifications,
        "parts": {k: round(v, 3) for k, v in parts.items()},
        "floor_ms": round(brief, 3), "ceiling_per_s": round(args.cores / brief * 1000, 1),
        "extended_parts": {k: round(v, 3) for k, v in extra.items()},
        "extended_floor_ms": round(extended, 3), "extended_ceiling_per_s": round(args.cores / extended * 1000, 1),
    }
    server_ms, client_ms = base["server_cpu_us"] / 1000, base["client_cpu_us"] / 1000
    proto_out = cpu["signpresigned_request_encode"] + cpu["signpresigned_response_decode"]
    proto_in = cpu["signpresigned_request_decode"] + cpu["signpresigned_response_encode"]
    signer = (server_ms + args.signer_commits * cpu["sqlite_commit"] + args.approvals * cpu["ed25519_verify"]
              + cpu["approval_bundle_decode"] + cpu["ed25519_sign"] + proto_in)
    out["per_process_ms"] = {  # the extended floor, split by process (compare bench_cluster's cpu_ms_per_sig)
        "coordinator": round(3 * server_ms + t * client_ms + args.coordinator_commits * cpu["sqlite_commit"]
                             + args.approvals * cpu["ed25519_verify"] + cpu["approval_bundle_decode"]
                             + t * cpu["ed25519_verify"] + cpu["ecdsa_verify"] + t * proto_out, 3),
        "each_signer": round(signer, 3),
        "client": round(3 * client_ms + args.approvals * cpu["ed25519_sign"], 3),
    }
    bare = rpc.get("sync/bare/base", {}).get(level)
    aio = rpc.get("aio/bare/base", {}).get(level)
    for name, fig in (("sync_bare", bare), ("sync_wrapped", rpc.get("sync/wrapped/base", {}).get(level)), ("aio_bare", aio),
                      ("aio_project", rpc.get("aio/project/base", {}).get(level))):
        if fig is not None:
            out[f"floor_ms_with_{name}_rpc"] = round(brief - parts["rpc_ms"] + calls * fig["cpu_us"] / 1000, 3)
    return out


def summarize(runs: dict[str, dict[int, list[CallFigures]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, levels in runs.items():
        out[name] = {}
        for c, figs in sorted(levels.items()):
            out[name][str(c)] = {
                "client_cpu_us": round(median([f.client_cpu_us for f in figs]), 1),
                "server_cpu_us": round(median([f.server_cpu_us for f in figs]), 1),
                "cpu_us": round(median([f.cpu_us for f in figs]), 1),
                "cpu_us_runs": [round(f.cpu_us, 1) for f in figs],
                "wall_us": round(median([f.wall_us for f in figs]), 1),
                "calls_per_s": round(median([f.calls_per_s for f in figs]), 1),
            }
    return out


def uptime() -> str:
    """The load averages (1, 5, 15 minutes) as ``uptime`` prints them."""
    try:
        return ", ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def report(result: dict[str, Any]) -> Iterator[str]:
    yield f"grpcio {result['grpcio']}, {result['cores']} cores, load average before {result['load_before']}, after {result['load_after']}"
    yield (f"RPC: ListPresignatures over mTLS, profile {result['profile']}, {result['calls']} calls per batch, "
           f"median of {result['rounds']} rounds")
    yield f"  {'config':28} {'c':>3} {'client CPU':>11} {'server CPU':>11} {'total CPU':>10} {'wall/call':>10} {'calls/s':>9}"
    for name, levels in result["rpc"].items():
        for c, f in levels.items():
            yield (f"  {name:28} {c:>3} {f['client_cpu_us']:>8.0f} us {f['server_cpu_us']:>8.0f} us {f['cpu_us']:>7.0f} us "
                   f"{f['wall_us']:>7.0f} us {f['calls_per_s']:>9.0f}")
    for variant, v in result["variants"].items():
        yield (f"  variant {variant} (sync/{v['handler']}, c={result['variant_concurrency']}, {v['pairs']} A/B pairs): "
               f"{v['base_cpu_us']:.0f} -> {v['variant_cpu_us']:.0f} us CPU per call, median pair ratio {v['ratio_median']:.3f} "
               f"({(v['ratio_median'] - 1) * 100:+.1f}%)")
    yield f"micro floors (CPU ms per operation, median of {result['rounds']} rounds of {result['micro_n']}; SQLite in {result['db_dir']}):"
    for name, v in result["micro"].items():
        if "cpu_ms" in v:
            yield f"  {name:32} {v['cpu_ms']:.4f} ms CPU ({v['wall_ms']:.4f} ms wall)"
    sizes = result["micro"].get("sizes_bytes", {})
    if sizes:
        yield f"  SignPresigned sizes: request {sizes['signpresigned_request']:.0f} B, response {sizes['signpresigned_response']:.0f} B"
    f = result["floor"]
    if "floor_ms" in f:
        p = f["parts"]
        yield (f"floor per {f['t']}-of-n signature: {f['floor_ms']:.2f} ms CPU = {f['unary_calls']} calls x "
               f"{f['rpc_cpu_ms_per_call']:.3f} ms ({p['rpc_ms']:.2f}) + {f['commits']:g} commits ({p['commits_ms']:.2f}) + "
               f"{f['approval_verifications']} approval "
               f"verifications ({p['approval_verifications_ms']:.2f}); ceiling {f['ceiling_per_s']:.0f}/s on {f['cores']} cores")
        yield (f"extended floor (+ approver and envelope signatures, bundle decodes, final verify, protobuf): "
               f"{f['extended_floor_ms']:.2f} ms; ceiling {f['extended_ceiling_per_s']:.0f}/s")
        pp = f["per_process_ms"]
        yield (f"  extended floor by process: coordinator {pp['coordinator']:.2f} ms, each signer {pp['each_signer']:.2f} ms, "
               f"client {pp['client']:.2f} ms")
        for k in ("sync_bare", "sync_wrapped", "aio_bare", "aio_project"):
            if f"floor_ms_with_{k}_rpc" in f:
                yield f"  floor with {k} RPCs: {f[f'floor_ms_with_{k}_rpc']:.2f} ms"
    else:
        yield f"floor: {f['note']}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every measurement (medians over them)")
    ap.add_argument("--calls", type=int, default=2000, help="RPCs per batch (per concurrency level)")
    ap.add_argument("--warmup", type=int, default=200, help="untimed RPCs after a server starts")
    ap.add_argument("--concurrency", default="1,4,16,64", help="comma-separated client thread counts")
    ap.add_argument("--modes", default="sync,aio", help="server modes: sync, aio")
    ap.add_argument("--handlers", default="project,wrapped,bare", help="handlers: project, wrapped, bare (aio: no wrapped)")
    names = ", ".join(v for v in VARIANTS if v != "base")
    ap.add_argument("--variants", default="", help=f"option variants to compare, comma-separated: {names}; base: the A/A control")
    ap.add_argument("--variant-concurrency", type=int, default=16)
    ap.add_argument("--variant-pairs", type=int, default=9, help="A/B pairs (base, variant) per variant")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="coordinator", help="server thread pool as configured for")
    ap.add_argument("--micro-n", type=int, default=300, help="operations per micro-benchmark round")
    ap.add_argument("--no-rpc", action="store_true", help="micro floors only")
    ap.add_argument("--db-dir", type=Path, default=Path(tempfile.gettempdir()), help="directory for the SQLite commit benchmark")
    ap.add_argument("--t", type=int, default=2, help="signers per signature")
    ap.add_argument("--approvals", type=int, default=2, help="approvals per request")
    ap.add_argument("--coordinator-commits", type=float, default=4.6,
                    help="coordinator commits per signature (bench_cluster burst c=16, warm pools: 4.62)")
    ap.add_argument("--signer-commits", type=float, default=1.0, help="commits per signer per signature (the consume commit)")
    ap.add_argument("--floor-concurrency", type=int, default=16)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--out", type=Path, help="also write the JSON result here")
    ap.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--handler", choices=HANDLERS, default="project", help=argparse.SUPPRESS)
    ap.add_argument("--variant-name", choices=sorted(VARIANTS), default="base", help=argparse.SUPPRESS)
    ap.add_argument("--tls-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        return args
    try:
        args.concurrency = [int(x) for x in args.concurrency.split(",") if x]
    except ValueError:
        ap.error("--concurrency: comma-separated positive integers")
    args.modes = [m for m in args.modes.split(",") if m]
    args.handlers = [h for h in args.handlers.split(",") if h]
    args.variants = [v for v in args.variants.split(",") if v]
    if not args.concurrency or min(args.concurrency) < 1:
        ap.error("--concurrency: comma-separated positive integers")
    if any(m not in MODES for m in args.modes):
        ap.error(f"--modes: each one of {', '.join(MODES)}")
    if any(h not in HANDLERS for h in args.handlers):
        ap.error(f"--handlers: each one of {', '.join(HANDLERS)}")
    if any(v not in VARIANTS for v in args.variants):
        ap.error(f"--variants: each one of {', '.join(VARIANTS)}")
    for name in ("rounds", "calls", "micro_n", "t", "variant_concurrency", "variant_pairs", "floor_concurrency", "cores"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')}: must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        return serve(args.serve, args.handler, args.variant_name, args.profile, args.tls_dir)
    load_before = uptime()
    rpc: dict[str, dict[str, Any]] = {}
    variants: dict[str, dict[str, Any]] = {}
    if not args.no_rpc:
        with tempfile.TemporaryDirectory(prefix="floor-tls-") as d:
            tls = make_tls(Path(d))
            rpc = summarize(rpc_runs(args, tls, Path(d)))
            variants = summarize_pairs(variant_pairs(args, tls, Path(d)))
    micro = micro_runs(args)
    result: dict[str, Any] = {
        "grpcio": grpc.__version__, "cores": args.cores, "profile": args.profile, "rounds": args.rounds,
        "calls": args.calls, "micro_n": args.micro_n, "db_dir": str(args.db_dir),
        "variant_concurrency": args.variant_concurrency, "rpc": rpc, "variants": variants, "micro": micro,
    }
    result["floor"] = floor(args, rpc, micro)
    result["load_before"], result["load_after"] = load_before, uptime()
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n")
    if args.json:
        print(text)
    else:
        for line in report(result):
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
