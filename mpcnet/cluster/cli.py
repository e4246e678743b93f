"""``mpc-cluster``: a local development cluster, supervised with trio.

    mpc-cluster up --nodes 5 --threshold 3 --dir DIR [--foreground]
    mpc-cluster status --dir DIR [--json]
    mpc-cluster stop --dir DIR

``up`` creates (on first use) a dev CA, every certificate, the nodes' keystores and passphrase
files and all configs in DIR, starts n nodes and the coordinator on free localhost ports, waits
until every process is healthy, writes ``DIR/cluster.json`` and returns, leaving a detached
supervisor running. With ``--foreground`` the supervisor stays attached; Ctrl-C stops
everything. The supervisor restarts a process that crashes and reports it (its log, the
``restarts`` counters in cluster.json and ``status``). Re-running ``up`` on an existing DIR
reuses its CA, keys and data.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TypeGuard

from mpcnet.cluster.launcher import (
    ClusterError,
    Layout,
    check_health,
    child_env,
    command,
    info_doc,
    initial_attestation,
    load_layout,
    prepare,
)
from mpcnet.common.config import write_json
from mpcnet.common.datadir import DataDirBusy, hold_data_dirs, lock_holder

log = logging.getLogger("mpc-cluster")
STOP_GRACE_S = 10.0


def _alive(pid: int | None) -> TypeGuard[int]:
    """Whether ``pid`` (None or 0: no process) is a running process that is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _supervisor_pid(lay: Layout) -> int | None:
    """The pid of this cluster's live supervisor (0 if it is live but its pid is unreadable),
    or None: the holder of the cluster directory's lock (:func:`supervise` holds it). Never the
    pid in cluster.json alone: a killed supervisor leaves it behind, and the system may give it
    to an unrelated process (which ``stop`` would then signal)."""
    return lock_holder(lay.dir)


def _leftovers(lay: Layout) -> dict[str, int]:
    """Processes of this cluster still running without a supervisor (the supervisor was killed;
    its children live on in their own sessions): name -> pid (0 if unknown), found through the
    data-directory locks they hold (:mod:`mpcnet.common.datadir`)."""
    dirs = {f"node-{i}": lay.node_dir(i) for i in range(1, lay.nodes + 1)}
    dirs["coordinator"] = lay.coordinator_dir
    out = {}
    for name, d in dirs.items():
        pid = lock_holder(d)
        if pid is not None:
            out[name] = pid
    return out


def _describe(left: dict[str, int]) -> str:
    return ", ".join(f"{n} (pid {p or 'unknown'})" for n, p in left.items())


def _read_info(lay: Layout) -> dict[str, Any] | None:
    try:
        info: dict[str, Any] = json.loads(lay.info_path.read_text())
        return info
    except (OSError, ValueError):
        return None


# --- the supervisor --------------------------------------------------------------------------


class Supervisor:
    def __init__(self, lay: Layout, *, echo: bool) -> None:
        self.lay = lay
        self.echo = echo
        self.procs: dict[str, Any] = {}
        self.restarts: dict[str, int] = {}
        self.stopping = False
        self.status = "starting"

    def say(self, msg: str) -> None:
        log.info("%s", msg)
        if self.echo:
            print(f"mpc-cluster: {msg}", flush=True)

    def write_info(self) -> None:
        pids = {n: p.pid for n, p in self.procs.items() if p.returncode is None}
        write_json(self.lay.info_path, info_doc(self.lay, pids, os.getpid(), self.status, self.restarts))

    async def run(self) -> int:
        import trio

        async with trio.open_nursery() as nursery:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                nodes = [f"node-{i}" for i in range(1, self.lay.nodes + 1)]
                for name in nodes:
                    nursery.start_soon(self.keep_running, name)
                ok = await self.wait_healthy(nodes, 60.0)
                if ok:
                    nursery.start_soon(self.keep_running, "coordinator")
                    ok = await self.wait_healthy(["coordinator"], 60.0)
                if not ok:
                    self.status = "failed"
                    self.write_info()
                    await self.stop_all()
                    nursery.cancel_scope.cancel()
                    return 1
                self.write_info()  # cluster.json (still "starting") for the attesting client
                try:  # development only: the launcher holds admin1's key
                    await trio.to_thread.run_sync(initial_attestation, self.lay)
                except Exception as e:  # signing then waits for `mpc policy attest`
                    self.say(f"could not attest the initial policies ({type(e).__name__}: {e}); run 'mpc policy attest'")
                self.status = "running"
                self.write_info()
                eps = self.lay.endpoints()
                self.say(
                    f"{self.lay.threshold}-of-{self.lay.nodes} cluster running; coordinator at {eps['coordinator']}; "
                    f"details in {self.lay.info_path}"
                )
                async for sig in signals:
                    self.say(f"signal {sig}: stopping the cluster")
                    break
                await self.stop_all()
                nursery.cancel_scope.cancel()
        self.status = "stopped"
        self.write_info()
        self.say("stopped")
        return 0

    async def keep_running(self, name: str) -> None:
        import trio

        backoff = 0.5
        while not self.stopping:
            out = open(self.lay.log(name).with_suffix(".out"), "ab")
            try:
                # own session: a Ctrl-C at the terminal reaches only the supervisor, which then
                # stops the children in order
                proc = await trio.lowlevel.open_process(
                    command(self.lay, name), env=child_env(), stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )
            finally:
                out.close()
            self.procs[name] = proc
            if self.status == "running":
                self.write_info()
            started = time.monotonic()
            rc = await proc.wait()
            if self.stopping:
                return
            self.restarts[name] = self.restarts.get(name, 0) + 1
            self.say(f"{name} (pid {proc.pid}) exited with status {rc}; restarting it (restart #{self.restarts[name]})")
            self.write_info()
            backoff = 0.5 if time.monotonic() - started > 30 else min(backoff * 2, 8.0)
            await trio.sleep(backoff)

    async def wait_healthy(self, names: list[str], timeout: float) -> bool:
        import trio

        eps = self.lay.endpoints()
        deadline = time.monotonic() + timeout
        for name in names:
            while not await trio.to_thread.run_sync(check_health, self.lay, eps[name], 1.0):
                if time.monotonic() > deadline:
                    self.say(f"{name} did not become healthy within {timeout:.0f}s; see {self.lay.log(name)}")
                    return False
                await trio.sleep(0.1)
        return True

    async def stop_all(self) -> None:
        import trio

        self.stopping = True
        order = ["coordinator"] + [f"node-{i}" for i in range(1, self.lay.nodes + 1)]
        for name in order:
            p = self.procs.get(name)
            if p is not None and p.returncode is None:
                p.send_signal(signal.SIGTERM)
        with trio.move_on_after(STOP_GRACE_S):
            for name in order:
                p = self.procs.get(name)
                if p is not None:
                    await p.wait()
        for p in self.procs.values():
            if p.returncode is None:
                p.kill()
                await p.wait()


def supervise(lay: Layout, *, echo: bool) -> int:
    import trio

    from mpcnet.common.config import setup_logging

    setup_logging(lay.log("supervisor"), "supervisor")
    try:
        with hold_data_dirs([lay.dir]):  # what marks this process as the cluster's supervisor
            return trio.run(Supervisor(lay, echo=echo).run)
    except DataDirBusy as e:
        print(f"mpc-cluster: another supervisor runs this cluster ({e})", file=sys.stderr)
        return 1


# --- commands --------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    d = Path(args.dir).resolve()
    try:
        existing = load_layout(d) if (d / "cluster-params.json").exists() else None
    except ClusterError:
        existing = None
    if existing is not None:
        sup_pid = _supervisor_pid(existing)
        if sup_pid is not None:
            print(f"mpc-cluster: already running in {d} (supervisor pid {sup_pid or 'unknown'})")
            return 0
        left = _leftovers(existing)
        if left:  # before prepare(), which would give the new configs other ports
            print(
                f"mpc-cluster: {d}: {_describe(left)} still running without a supervisor; "
                f"stop them first ('mpc-cluster stop --dir {d}')", file=sys.stderr,
            )
            return 1
    try:
        lay = prepare(d, args.nodes, args.threshold, scrypt_n=args.scrypt_n, test_mode=args.test_mode)
    except ClusterError as e:
        print(f"mpc-cluster: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"mpc-cluster: cannot create the cluster in {d}: {e.strerror or type(e).__name__} ({e.filename})", file=sys.stderr)
        return 2
    lay.info_path.unlink(missing_ok=True)
    if args.foreground:
        return supervise(lay, echo=True)
    out = open(lay.log("supervisor").with_suffix(".out"), "ab")
    sup = subprocess.Popen(
        [sys.executable, "-m", "mpcnet.cluster.cli", "_supervise", "--dir", str(lay.dir)],
        env=child_env(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    out.close()
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        info = _read_info(lay)
        if info and info.get("status") == "running" and info.get("supervisor_pid") == sup.pid:
            print_status(lay, info, as_json=args.json)
            return 0
        if (info and info.get("status") == "failed") or sup.poll() is not None:
            print(f"mpc-cluster: the cluster failed to start; see {lay.log('supervisor')} and {lay.dir / 'logs'}", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print(f"mpc-cluster: not healthy within {args.timeout:.0f}s; stopping it", file=sys.stderr)
    sup.send_signal(signal.SIGTERM)
    return 1


def print_status(lay: Layout, info: dict[str, Any], *, as_json: bool, probe: bool = True) -> dict[str, Any]:
    sup_pid = _supervisor_pid(lay)
    sup_alive = sup_pid is not None
    procs = [dict(n) for n in info["nodes"]] + [dict(info["coordinator"], name="coordinator")]
    left = {} if sup_alive else _leftovers(lay)  # still serving after their supervisor died
    for p in procs:
        if not sup_alive:
            p["pid"] = left.get(p["name"]) or None
        running = sup_alive or p["name"] in left
        p["healthy"] = bool(probe and running and check_health(lay, p["endpoint"], 1.0))
        p["restarts"] = info.get("restarts", {}).get(p["name"], 0)
    state = info.get("status") if sup_alive else ("unsupervised" if left else "stopped")
    doc = {"dir": str(lay.dir), "status": state, "threshold": info["threshold"], "nodes": len(info["nodes"]),
           "supervisor_pid": sup_pid or None, "processes": procs,
           "ca_cert": info["ca_cert"], "certs": info["certs"]}
    if as_json:
        print(json.dumps(doc, indent=2))
        return doc
    supervisor = f", supervisor pid {sup_pid or 'unknown'}" if sup_alive else ""
    print(f"cluster {lay.dir}: {state}, {info['threshold']}-of-{len(info['nodes'])}{supervisor}")
    for p in procs:
        health = "healthy" if p["healthy"] else "DOWN"
        extra = f", restarted {p['restarts']}x" if p["restarts"] else ""
        print(f"  {p['name']:<12} {p['endpoint']:<22} pid {p.get('pid') or '-'!s:<8} {health}{extra}")
    print(f"client: mpc --cluster {lay.dir} --as admin1 keys   (identities: {lay.dir}/identities)")
    return doc


def cmd_status(args: argparse.Namespace) -> int:
    try:
        lay = load_layout(Path(args.dir))
    except ClusterError as e:
        print(f"mpc-cluster: {e}", file=sys.stderr)
        return 2
    info = _read_info(lay)
    if info is None:
        print(f"mpc-cluster: {lay.dir}: not running (no cluster.json)")
        return 3
    doc = print_status(lay, info, as_json=args.json)
    return 0 if doc["status"] == "running" and all(p["healthy"] for p in doc["processes"]) else 3


def _stop_leftovers(left: dict[str, int]) -> None:
    """SIGTERM the processes that hold the cluster's data directories, SIGKILL what is left after
    the grace period (the pids come from the locks they hold, so they are ours)."""
    pids = [p for p in left.values() if p]
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for p in pids:
        if _alive(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)


def cmd_stop(args: argparse.Namespace) -> int:
    try:
        lay = load_layout(Path(args.dir))
    except ClusterError as e:
        print(f"mpc-cluster: {e}", file=sys.stderr)
        return 2
    pid = _supervisor_pid(lay)
    if pid == 0:
        print(f"mpc-cluster: {lay.dir}: the supervisor is starting (its pid is not written yet); try again", file=sys.stderr)
        return 1
    if pid is None:
        left = _leftovers(lay)
        if not left:
            print(f"mpc-cluster: {lay.dir}: not running")
            return 0
        _stop_leftovers(left)
        print(f"mpc-cluster: stopped {lay.dir} ({_describe(left)} had no supervisor)")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):  # should not happen: kill the supervisor and what it started
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _stop_leftovers(_leftovers(lay))  # found through their locks, like the supervisor
    print(f"mpc-cluster: stopped {lay.dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mpc-cluster", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="{up,status,stop}")  # not the internal _supervise
    p = sub.add_parser("up", help="create (first use) and start a local cluster")
    p.add_argument("--nodes", "-n", type=int, default=5)
    p.add_argument("--threshold", "-t", type=int, default=3)
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--foreground", action="store_true", help="stay attached; Ctrl-C stops the cluster")
    p.add_argument("--json", action="store_true")
    p.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the cluster to be healthy")
    p.add_argument("--scrypt-n", type=int, default=2**15, help="scrypt cost of new keystores/stores (tests use 1024)")
    p.add_argument("--test-mode", action="store_true", help="nodes honour MPC_TEST_FAULT_FILE (tests only)")
    p.set_defaults(fn=cmd_up)
    p = sub.add_parser("status", help="processes, endpoints and health")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_status)
    p = sub.add_parser("stop", help="stop the cluster (its data stays in DIR)")
    p.add_argument("--dir", required=True, type=Path)
    p.set_defaults(fn=cmd_stop)
    p = sub.add_parser("_supervise")  # the detached supervisor (cmd_up starts it); no help=, so --help leaves it out
    p.add_argument("--dir", required=True, type=Path)
    p.set_defaults(fn=lambda a: supervise(load_layout(a.dir), echo=False))
    args = ap.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
