"""``mpc-cluster``: a local development cluster, supervised with trio.

    mpc-cluster up --dir DIR [--nodes 5 --threshold 3] [--foreground] [--quiet] [--json] [--log-format text|json]
    mpc-cluster status --dir DIR [--json]
    mpc-cluster stop --dir DIR
    mpc-cluster add-node --dir DIR
    mpc-cluster wipe-node --dir DIR N | replace-node --dir DIR N [--out FILE]

``up`` creates (on first use) a dev CA, every certificate, the nodes' keystores and passphrase
files and all configs in DIR, starts n nodes and the coordinator on free localhost ports, waits
until every process is healthy, writes ``DIR/cluster.json`` and returns, leaving a detached
supervisor running; it reports each step on stderr with its timing (``--quiet``: none). With
``--foreground`` the supervisor stays attached; Ctrl-C stops everything. The supervisor restarts a
process that crashes and reports it (its log, the ``restarts`` counters in cluster.json and
``status``). Re-running ``up`` on an existing DIR reuses its CA, keys, data and topology (a
conflicting ``--nodes``/``--threshold`` is a usage error). Ctrl-C during ``up`` stops what it
started and exits 130; the next ``up`` completes what is missing.

Every ending is one exit code and at most one line on stderr (:mod:`mpcnet.common.cliutil`):
see :data:`EPILOG`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeGuard

import click

from governance.text import escape
from mpcnet.cluster.launcher import (
    MAX_LOCAL_NODES,
    ClusterError,
    Layout,
    check_health,
    check_topology,
    child_env,
    command,
    info_doc,
    initial_attestation,
    kill_and_reap,
    load_layout,
    prepare,
    read_params,
)
from mpcnet.cluster.log_format import configured_log_format, running_mismatch
from mpcnet.cluster.presign_config import running_mismatch as presign_mismatch
from mpcnet.cluster.replace import activate, held_back, is_wiped, ready_nodes
from mpcnet.cluster.roster_view import revoked_names, roster_in_force
from mpcnet.common import cliutil
from mpcnet.common.cliutil import Choice, Failed, PathArg, Seconds, UInt
from mpcnet.common.config import write_json
from mpcnet.common.datadir import DataDirBusy, hold_data_dirs, lock_holder
from mpcnet.common.interrupts import DeferredInterrupt
from mpcnet.common.jsonlog import LOG_FORMATS
from mpcnet.common.keystore import MAX_SCRYPT_N, MIN_SCRYPT_N
from mpcnet.common.pki import PkiError

PROG = "mpc-cluster"
DEFAULT_NODES = 5
DEFAULT_THRESHOLD = 3
PROGRESS_PREFIX = "progress: "
"""How the detached supervisor marks, in ``logs/supervisor.out``, the lines ``up`` relays to stderr."""
EXIT_NOT_RUNNING = 3
EPILOG = f"""\b
Exit codes:
  0    success (up: the cluster is running and healthy; stop: nothing of it runs)
  1    failed: a process did not become healthy, or stop left processes running
  2    usage error: bad arguments, DIR is not a (usable) cluster directory or holds
       another topology, DIR cannot be written
  {EXIT_NOT_RUNNING}    status only: the cluster is not running, or a process is not healthy
  130  interrupted (Ctrl-C); what up had started is stopped
  141  stdout was closed by its reader (status --json | head -1); output discarded
"""
log = logging.getLogger("mpc-cluster")
STOP_GRACE_S = 10.0
STOP_WAIT_FOR_UP_S = 120.0  # how long 'stop' waits for an 'up' under way (up's default --timeout and grace)
UP_LOCK = "up.lock"  # held by 'up' while it prepares and starts the cluster (one 'up' at a time)


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


# --- progress ---------------------------------------------------------------------------------


class Progress:
    """``mpc-cluster: [  4.2s] MESSAGE`` lines on stderr (escaped; the time since ``up`` began),
    or nothing when quiet."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.monotonic()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            cliutil.say(PROG, f"[{time.monotonic() - self.t0:6.1f}s] {message}")


def _to_file(message: str) -> None:
    """The detached supervisor's progress: a marked line on its stdout (``logs/supervisor.out``),
    which ``up`` relays while it waits."""
    with contextlib.suppress(OSError, ValueError):
        print(PROGRESS_PREFIX + escape(message), flush=True)


class _Relay:
    """Relays the marked progress lines the supervisor appends to ``logs/supervisor.out``."""

    def __init__(self, f: BinaryIO, progress: Progress) -> None:
        self.f, self.progress, self.buf = f, progress, b""

    def poll(self) -> None:
        self.buf += self.f.read(1 << 16)
        *lines, self.buf = self.buf.split(b"\n")
        marker = PROGRESS_PREFIX.encode()
        for line in lines:
            if line.startswith(marker):
                self.progress(line[len(marker):].decode("utf-8", "replace"))


# --- the supervisor --------------------------------------------------------------------------


class Supervisor:
    def __init__(self, lay: Layout, *, echo: bool, progress: Callable[[str], None]) -> None:
        self.lay = lay
        self.echo = echo
        self.progress = progress
        self.procs: dict[str, Any] = {}
        self.restarts: dict[str, int] = {}
        self.stopping = False
        self.status = "starting"

    def say(self, msg: str) -> None:
        log.info("%s", msg)
        if self.echo:
            print(f"{PROG}: {escape(msg)}", flush=True)

    def write_info(self) -> None:
        pids = {n: p.pid for n, p in self.procs.items() if p.returncode is None}
        write_json(self.lay.info_path, info_doc(self.lay, pids, os.getpid(), self.status, self.restarts))

    async def run(self) -> int:
        """Start the nodes, then the coordinator, each once the ones before are healthy; keep them
        running until SIGINT/SIGTERM, which (also while starting) stops them all. Returns 0 when
        stopped by a signal once running, 1 if a process never became healthy, 130 if a signal
        came while starting."""
        import trio

        rc = 0
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGUSR1) as signals:
            async with trio.open_nursery() as nursery:
                done = trio.Event()
                starting = trio.CancelScope()

                async def start() -> None:
                    nonlocal rc
                    with starting:
                        if not await self.start_all(nursery):
                            rc = 1
                            self.status = "failed"
                            self.write_info()
                            done.set()

                async def watch() -> None:
                    nonlocal rc
                    async for sig in signals:
                        if sig == signal.SIGUSR1:  # mpc-cluster add-node: start the nodes added to DIR
                            nursery.start_soon(self.start_added, nursery)
                            continue
                        self.say(f"signal {sig}: stopping the cluster")
                        if self.status == "starting":
                            rc = 130
                            self.progress(f"signal {sig}: stopping the cluster while it starts")
                        done.set()
                        return

                nursery.start_soon(watch)
                nursery.start_soon(start)
                await done.wait()
                starting.cancel()  # a signal while starting: no more waiting for health
                await self.stop_all()
                nursery.cancel_scope.cancel()
        if self.status != "failed":
            self.status = "stopped"
        self.write_info()
        self.say("stopped")
        return rc

    async def start_all(self, nursery: Any) -> bool:
        """Start every process and wait until it is healthy; attest the initial policies.
        False if one did not become healthy (after writing why)."""
        import trio

        revoked = await trio.to_thread.run_sync(revoked_names, self.lay)
        await trio.to_thread.run_sync(_activate_ready, self.lay)
        gone = await trio.to_thread.run_sync(held_back, self.lay)
        nodes = [f"node-{i}" for i in range(1, self.lay.nodes + 1) if f"node-{i}" not in revoked and f"node-{i}" not in gone]
        if revoked:  # a revoked node refuses to start: it is not started at all
            msg = f"not starting {', '.join(sorted(revoked, key=_node_number))}: revoked in the roster in force"
            self.say(msg)
            self.progress(msg)
        for name, state in sorted(gone.items(), key=lambda x: _node_number(x[0])):  # issue 12: mpc-cluster wipe-node
            msg = f"not starting {name}: {_HELD_BACK[state].format(dir=self.lay.dir, n=_node_number(name))}"
            self.say(msg)
            self.progress(msg)
        for name in nodes:
            self.progress(f"starting {name}")
            nursery.start_soon(self.keep_running, name)
        self.progress(f"waiting for {len(nodes)} nodes to become healthy")
        if not await self.wait_healthy(nodes, 60.0):
            return False
        self.progress("starting the coordinator")
        nursery.start_soon(self.keep_running, "coordinator")
        if not await self.wait_healthy(["coordinator"], 60.0):
            return False
        self.write_info()  # cluster.json (still "starting") for the attesting client
        self.progress("attesting the initial policies (as admin1)")
        try:  # development only: the launcher holds admin1's key
            await trio.to_thread.run_sync(initial_attestation, self.lay, abandon_on_cancel=True)
        except Exception as e:  # signing then waits for `mpc policy attest`
            msg = f"could not attest the initial policies ({type(e).__name__}: {e}); run 'mpc policy attest'"
            self.say(msg)
            self.progress(msg)
        self.status = "running"
        self.write_info()
        eps = self.lay.endpoints()
        self.say(
            f"{cluster_shape(self.lay)} cluster running; coordinator at {eps['coordinator']}; "
            f"details in {self.lay.info_path}"
        )
        return True

    async def start_added(self, nursery: Any) -> None:
        """Re-read DIR's topology and start the nodes it has gained (``mpc-cluster add-node``);
        ignored unless the cluster is running."""
        import trio

        if self.status != "running":
            self.say("SIGUSR1 while not running: ignored")
            return
        try:
            lay = await trio.to_thread.run_sync(load_layout, self.lay.dir)
        except ClusterError as e:
            self.say(f"SIGUSR1: cannot re-read the cluster directory ({e})")
            return
        added = [f"node-{i}" for i in range(self.lay.nodes + 1, lay.nodes + 1)]
        self.lay = lay
        # replaced nodes the roster now names (issue 12: mpc-cluster replace-node, then up)
        for i in await trio.to_thread.run_sync(_activate_ready, lay):
            name = f"node-{i}"
            p = self.procs.get(name)
            if name not in added and (p is None or p.returncode is not None):
                added.append(name)
        for name in added:
            self.say(f"starting {name} (added)")
            nursery.start_soon(self.keep_running, name)
        if added and await self.wait_healthy(added, 60.0):
            self.write_info()

    async def keep_running(self, name: str) -> None:
        import trio

        backoff = 0.5
        while not self.stopping:
            if name.startswith("node-") and is_wiped(self.lay, _node_number(name)):  # its host is gone
                self.say(f"{name} is wiped: not restarted ('mpc-cluster replace-node --dir {self.lay.dir} {_node_number(name)}')")
                self.procs.pop(name, None)
                self.write_info()
                return
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
            if self.stopping:  # spawned while stop_all() signalled the others: it missed this one
                proc.kill()
                await proc.wait()
                return
            if self.status == "running":
                self.write_info()
            started = time.monotonic()
            rc = await proc.wait()
            if self.stopping:
                return
            if name.startswith("node-") and is_wiped(self.lay, _node_number(name)):  # mpc-cluster wipe-node killed it
                self.say(f"{name} (pid {proc.pid}) was wiped: not restarted")
                self.procs.pop(name, None)
                self.write_info()
                return
            self.restarts[name] = self.restarts.get(name, 0) + 1
            self.say(f"{name} (pid {proc.pid}) exited with status {rc}; restarting it (restart #{self.restarts[name]})")
            self.write_info()
            backoff = 0.5 if time.monotonic() - started > 30 else min(backoff * 2, 8.0)
            await trio.sleep(backoff)

    async def wait_healthy(self, names: list[str], timeout: float) -> bool:
        import trio

        eps = self.lay.endpoints()
        t0 = time.monotonic()
        deadline = t0 + timeout
        for name in names:
            # abandoned on a cancel (a signal while starting): the stop does not wait for the probe
            while not await trio.to_thread.run_sync(check_health, self.lay, eps[name], 1.0, abandon_on_cancel=True):
                if time.monotonic() > deadline:
                    msg = f"{name} did not become healthy within {timeout:.0f}s; see {self.lay.log(name)}"
                    self.say(msg)
                    self.progress(msg)
                    return False
                await trio.sleep(0.1)
            self.progress(f"{name} healthy (after {time.monotonic() - t0:.1f}s)")
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


def supervise(lay: Layout, *, echo: bool, progress: Callable[[str], None], locked: Callable[[], None] | None = None) -> int:
    """Run the cluster until stopped; ``locked`` is called once this process holds DIR's lock (it
    is the cluster's supervisor)."""
    import trio

    from mpcnet.common.config import setup_logging

    setup_logging(lay.log("supervisor"), "supervisor", log_format=configured_log_format(lay.coordinator_config) or "text")
    try:
        with hold_data_dirs([lay.dir]):  # what marks this process as the cluster's supervisor
            if locked is not None:
                locked()
            return trio.run(Supervisor(lay, echo=echo, progress=progress).run)
    except DataDirBusy as e:
        raise Failed(f"another supervisor runs this cluster ({e})") from None


# --- commands --------------------------------------------------------------------------------


def _usage(message: str) -> click.UsageError:
    """A usage error (exit 2) of the running command: ``mpc-cluster: error: MESSAGE (see ...)``."""
    return click.UsageError(message, click.get_current_context(silent=True))


def _dir_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--dir", "directory", required=True, type=PathArg("DIR", resolve=True), help=help_text)


def _json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="print the status as one JSON document on stdout")(f)


def _layout(directory: Path) -> Layout:
    try:
        return load_layout(directory)
    except ClusterError as e:
        raise _usage(str(e)) from None


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(name=PROG, context_settings=CONTEXT, epilog=EPILOG, no_args_is_help=False)
def cli() -> None:
    """A local development cluster (n share-holder nodes and a coordinator on localhost, mTLS,
    a dev CA and demo identities), supervised by a detached process.

    \b
      mpc-cluster up --dir DIR [--nodes 5 --threshold 3]   create on first use, start, wait until healthy
      mpc-cluster status --dir DIR [--json]                processes, endpoints, health
      mpc-cluster stop --dir DIR                           stop (the data stays in DIR)
      mpc-cluster add-node --dir DIR                       enrol and start one more node (issue 11)
      mpc-cluster wipe-node --dir DIR N                    lose node N's host: kill it, delete its data and keys
      mpc-cluster replace-node --dir DIR N                 a new host for wiped node N: keys, enrolment file
      mpc-cluster prometheus --dir DIR [--config-only]     a Prometheus scraping DIR, with the alert rules (issue 15)
    """


def _topology(d: Path, nodes: int | None, threshold: int | None) -> tuple[int, int, bool]:
    """(nodes, threshold, whether DIR already holds a cluster): DIR's stored topology, or the
    flags' (defaults 5 and min(3, nodes)) for a new DIR. Usage error on a conflict."""
    try:
        params = read_params(d)
    except ClusterError as e:
        raise _usage(str(e)) from None
    if params is not None:
        held = (params["nodes"], params["threshold"])
        if (nodes is not None and nodes != held[0]) or (threshold is not None and threshold != held[1]):
            raise _usage(
                f"{d} holds a {held[1]}-of-{held[0]} cluster; run 'mpc-cluster up --dir {d}' without "
                f"--nodes/--threshold, or use a new --dir"
            )
        return held[0], held[1], True
    if d.is_dir() and not (d / UP_LOCK).exists():  # an up of ours (even an interrupted one) made up.lock first
        try:
            with os.scandir(d) as it:
                occupied = next(it, None) is not None
        except OSError as e:
            raise _usage(f"--dir: cannot read {d}: {e.strerror or type(e).__name__}") from None
        if occupied:  # a typo ('--dir ~') must not scatter a cluster among someone's files
            raise _usage(f"--dir: {d} is not empty and holds no cluster; give a new or empty directory")
    n = DEFAULT_NODES if nodes is None else nodes
    t = min(DEFAULT_THRESHOLD, n) if threshold is None else threshold
    try:
        check_topology(n, t)
    except ClusterError as e:
        raise _usage(str(e)) from None
    return n, t, False


@cli.command("up", epilog=EPILOG)
@_dir_option("the cluster directory (created on first use; an existing one is reused with its topology)")
@click.option("--nodes", "-n", type=UInt(2, MAX_LOCAL_NODES, show_range=True), default=None,
              help=f"number of nodes of a new cluster [default: {DEFAULT_NODES}; an existing DIR: its own]")
@click.option("--threshold", "-t", type=UInt(2, MAX_LOCAL_NODES, show_range=True), default=None,
              help=f"signers needed, 2..nodes [default: min({DEFAULT_THRESHOLD}, nodes); an existing DIR: its own]")
@click.option("--foreground", is_flag=True, help="stay attached; Ctrl-C stops the cluster")
@_json_option
@click.option("--quiet", "-q", is_flag=True, help="no progress lines on stderr")
@click.option("--timeout", type=Seconds(3600), default=90.0, show_default=True,
              help="seconds to wait for the cluster to be healthy")
@click.option("--scrypt-n", type=UInt(MIN_SCRYPT_N, MAX_SCRYPT_N, show_range=True), default=2**15, show_default=True,
              help="scrypt cost of new keystores/stores, a power of two (tests use 1024)")
@click.option("--test-mode", is_flag=True, help="nodes honour MPC_TEST_FAULT_FILE (tests only)")
@click.option("--log-format", type=Choice(list(LOG_FORMATS)), default=None,
              help="server log lines as text or one JSON object per line [default: an existing DIR's, else text]")
@click.option("--presign/--no-presign", default=None,
              help="presignature pools at the coordinator (one-round signing) [default: an existing DIR's, else on]")
def cmd_up(directory: Path, nodes: int | None, threshold: int | None, foreground: bool, as_json: bool, quiet: bool,
           timeout: float, scrypt_n: int, test_mode: bool, log_format: str | None, presign: bool | None) -> int:
    """Create (first use) and start a local cluster; wait until every process is healthy.

    Progress goes to stderr, the final status to stdout. Ctrl-C stops what was started (exit 130).
    """
    d = directory  # absolute (PathArg)
    if foreground and as_json:  # a foreground cluster prints its supervisor's lines, never a status document
        raise _usage("--json goes without --foreground (it prints the status once a detached cluster is up)")
    if d.exists() and not d.is_dir():
        raise _usage(f"--dir: {d} exists and is not a directory")
    _topology(d, nodes, threshold)  # a bad topology or a conflict: refused before anything is written
    if scrypt_n & (scrypt_n - 1):  # as prepare() says it, but before the lock file is written
        raise _usage(f"scrypt-n: must be a power of two in [2**10, 2**20], got {scrypt_n}")
    with _one_up(d, timeout + STOP_GRACE_S + 10, Progress(quiet=quiet)) as release:
        return _up(d, nodes, threshold, foreground, as_json, quiet, timeout, scrypt_n, test_mode, release, log_format=log_format,
                   presign=presign)


@contextlib.contextmanager
def _one_up(d: Path, wait_s: float, progress: Progress) -> Iterator[Callable[[], None]]:
    """One ``up`` at a time in DIR (two cron jobs, two terminals): an exclusive ``flock`` on
    ``DIR/up.lock`` while ``up`` prepares and starts the cluster; a second ``up`` waits for it
    (then finds the cluster running, or completes what an interrupted one left), at most
    ``wait_s`` seconds (then exit 1). Yields what releases the lock early (``--foreground``: once
    this process is the supervisor, the next ``up`` finds the cluster running)."""
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _usage(f"cannot create the cluster in {d}: {e.strerror or type(e).__name__}") from None
    try:
        fd = os.open(d / UP_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise _usage(f"cannot write {d / UP_LOCK}: {e.strerror or type(e).__name__}") from None
    try:
        deadline, said = time.monotonic() + wait_s, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Failed(f"{d}: another 'mpc-cluster up' is still starting it after {wait_s:g}s") from None
                if not said:
                    progress("another 'mpc-cluster up' is starting this cluster: waiting for it")
                    said = True
                time.sleep(0.2)
        yield lambda: fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)  # releases the lock


def _up(d: Path, nodes: int | None, threshold: int | None, foreground: bool, as_json: bool, quiet: bool,
        timeout: float, scrypt_n: int, test_mode: bool, release: Callable[[], None], *, log_format: str | None = None,
        presign: bool | None = None) -> int:
    nodes, threshold, existed = _topology(d, nodes, threshold)  # again, under the lock: another up may have created DIR
    if existed:
        existing = _layout(d)
        sup_pid = _supervisor_pid(existing)
        if sup_pid is not None:
            if (mismatch := running_mismatch(log_format, existing.coordinator_config)) is not None:
                raise _usage(mismatch)
            if (mismatch := presign_mismatch(presign, existing.coordinator_config)) is not None:
                raise _usage(mismatch)
            started = _start_ready(existing, sup_pid, Progress(quiet=quiet), timeout)
            message = escape(f"mpc-cluster: already running in {d} (supervisor pid {sup_pid or 'unknown'})"
                             + (f"; started {', '.join(started)} (replaced)" if started else ""))
            if not as_json:
                print(message)
                return 0
            print(message, file=sys.stderr)  # stdout: the status, one JSON document
            info = _read_info(existing)
            if info is None:  # the supervisor is still writing it
                print(json.dumps({"dir": str(d), "status": "starting", "supervisor_pid": sup_pid or None}, indent=2))
                return 0
            try:
                print_status(existing, info, as_json=True)
            except ClusterError as e:
                raise _usage(str(e)) from None
            return 0
        left = _leftovers(existing)
        if left:  # before prepare(), which would give the new configs other ports
            raise Failed(f"{d}: {_describe(left)} still running without a supervisor; stop them first ('mpc-cluster stop --dir {d}')")
    progress = Progress(quiet=quiet)
    headline = [f"{'starting the' if existed else 'creating a'} {threshold}-of-{nodes} cluster in {d}"]

    def preparing(message: str) -> None:  # from prepare(), once DIR exists: a usage error before stays one line
        while headline:
            progress(headline.pop())
        progress(message)

    try:
        lay = prepare(d, nodes, threshold, scrypt_n=scrypt_n, test_mode=test_mode, progress=preparing, log_format=log_format,
                      presign=presign)
        lay.info_path.unlink(missing_ok=True)
        sup_out = lay.log("supervisor").with_suffix(".out")
        out = open(sup_out, "ab")
    except ClusterError as e:
        raise _usage(str(e)) from None
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""  # none for a failed write (a full disk: ENOSPC)
        raise _usage(f"cannot create the cluster in {d}: {e.strerror or type(e).__name__}{where}") from None
    if foreground:
        out.close()
        return supervise(lay, echo=True, progress=progress, locked=release)
    # from the spawn to the end of the stop, Ctrl-C is recorded and raised only where _wait_up checks
    # it: never inside subprocess's internals (a lost wait lock: the stop below would block for
    # ever) nor between the spawn and the try (a supervisor left running)
    with DeferredInterrupt() as interrupt, out, open(sup_out, "rb") as tail:
        tail.seek(0, os.SEEK_END)
        sup = subprocess.Popen(
            [sys.executable, "-m", "mpcnet.cluster.cli", "_supervise", "--dir", str(lay.dir)],
            env=child_env(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            return _wait_up(lay, sup, _Relay(tail, progress), progress, interrupt, timeout=timeout, as_json=as_json)
        except KeyboardInterrupt:
            progress("interrupted: stopping what was started")
            _stop_starting(lay, sup)
            raise


def _start_ready(lay: Layout, sup_pid: int, progress: Progress, timeout: float) -> list[str]:
    """On a running cluster: have the supervisor (SIGUSR1) start the replaced nodes the roster
    now names (issue 12) and wait until they are healthy. Their names; Failed if one is not
    healthy within ``timeout`` seconds."""
    ready = [f"node-{i}" for i in ready_nodes(lay)]
    if not ready or not sup_pid:
        return []
    progress(f"the roster names the new keys of {', '.join(ready)}: starting them")
    os.kill(sup_pid, signal.SIGUSR1)
    eps = lay.endpoints()
    deadline = time.monotonic() + timeout
    for name in ready:
        while not check_health(lay, eps[name], 1.0):
            if time.monotonic() > deadline:
                raise Failed(f"{name} did not become healthy within {timeout:g}s; see {lay.log(name)}")
            time.sleep(0.2)
        progress(f"{name} healthy")
    return ready


def _wait_up(lay: Layout, sup: subprocess.Popen[bytes], relay: _Relay, progress: Progress, interrupt: DeferredInterrupt,
             *, timeout: float, as_json: bool) -> int:
    """Relay the supervisor's progress until cluster.json says running (0, the status printed),
    failed or the supervisor died (Failed), or ``timeout`` seconds passed (stopped; Failed).
    KeyboardInterrupt (within 0.1 s) once ``interrupt`` recorded a Ctrl-C."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        interrupt.check()
        relay.poll()
        info = _read_info(lay)
        if info and info.get("status") == "running" and info.get("supervisor_pid") == sup.pid:
            relay.poll()
            progress(f"ready: {cluster_shape(lay)} cluster running (supervisor pid {sup.pid})")
            print_status(lay, info, as_json=as_json)
            return 0
        if (info and info.get("status") == "failed") or sup.poll() is not None:
            relay.poll()
            raise Failed(f"the cluster failed to start; see {lay.log('supervisor')} and {lay.dir / 'logs'}")
        interrupt.sleep(0.1)
    relay.poll()
    progress(f"not healthy within {timeout:g}s: stopping it")
    _stop_starting(lay, sup)
    raise Failed(f"not healthy within {timeout:g}s; see {lay.dir / 'logs'}")


def _stop_starting(lay: Layout, sup: subprocess.Popen[bytes]) -> None:
    """Stop a supervisor ``up`` started (SIGTERM; it stops its children, also while starting) and
    wait for it, at most ``STOP_GRACE_S + 10`` s; then SIGKILL it and what it started: its
    children (also one that does not hold its data directory's lock yet) and the holders of the
    cluster's locks (at most ``STOP_GRACE_S`` more). Call it with Ctrl-C deferred
    (:class:`DeferredInterrupt`): an interrupt inside ``Popen.wait`` can make the next one block."""
    with contextlib.suppress(ProcessLookupError):
        sup.send_signal(signal.SIGTERM)
    try:
        sup.wait(timeout=STOP_GRACE_S + 10)
    except subprocess.TimeoutExpired:
        children = _children(sup.pid)
        kill_and_reap(sup)
        for pid in children:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        _stop_leftovers(_leftovers(lay))


def _children(pid: int) -> list[int]:
    """The pids of ``pid``'s child processes (Linux ``/proc``; empty where it is unreadable)."""
    out = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    with open(f"/proc/{entry.name}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[-1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if ppid == pid:
                    out.append(int(entry.name))
    return out


def print_status(lay: Layout, info: dict[str, Any], *, as_json: bool, probe: bool = True) -> dict[str, Any]:
    """Print the cluster's status (text, escaped; or one JSON document) and return it as a dict.
    ClusterError if cluster.json is damaged."""
    try:
        doc = _status_doc(lay, info, probe=probe)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise ClusterError(f"{lay.info_path}: damaged ({type(e).__name__}: {e})") from None
    except PkiError as e:  # probing health needs DIR's CA and client certificate
        raise ClusterError(f"{lay.dir}: cannot check the processes' health: {e}") from None
    if as_json:
        print(json.dumps(doc, indent=2))
        return doc
    sup_pid = doc["supervisor_pid"]
    supervisor = f", supervisor pid {sup_pid}" if sup_pid else ""
    roster = doc.get("roster")
    if roster is None or not roster["revoked"]:
        shape = f"{doc['threshold']}-of-{doc['nodes']}"
    else:  # the nodes the roster in force counts, not the directories DIR holds
        shape = (f"{doc['threshold']}-of-{len(roster['active'])} (roster version {roster['version']}: nodes "
                 f"{','.join(map(str, roster['active']))}; revoked: {','.join(map(str, roster['revoked']))})")
    lines = [f"cluster {lay.dir}: {doc['status']}, {shape}{supervisor}"]
    for p in doc["processes"]:
        health = "healthy" if p["healthy"] else "DOWN"
        if p.get("revoked"):
            health = ("REVOKED: still running, takes part in nothing (stopped at the next 'up')" if p.get("pid")
                      else "REVOKED: not started")
        if p.get("held_back") == "wiped":
            health = "WIPED: not started (its host is gone; 'mpc-cluster replace-node')"
        elif p.get("held_back"):
            health = "REPLACED: not started until the roster names its new keys ('mpc node replace')"
        extra = f", restarted {p['restarts']}x" if p["restarts"] else ""
        lines.append(f"  {p['name']:<12} {p['endpoint']:<22} pid {p.get('pid') or '-'!s:<8} {health}{extra}")
    if doc.get("metrics"):  # issue 15: where Prometheus scrapes (mpc-cluster prometheus --dir DIR sets one up)
        lines.append("metrics: " + ", ".join(f"{name} {ep}" for name, ep in doc["metrics"].items()))
    lines.append(f"client: mpc --cluster {lay.dir} --as admin1 keys   (identities: {lay.dir}/identities)")
    print("\n".join(escape(line) for line in lines))
    return doc


def _status_doc(lay: Layout, info: dict[str, Any], *, probe: bool) -> dict[str, Any]:
    sup_pid = _supervisor_pid(lay)
    sup_alive = sup_pid is not None
    procs = [dict(n) for n in info["nodes"]] + [dict(info["coordinator"], name="coordinator")]
    left = {} if sup_alive else _leftovers(lay)  # still serving after their supervisor died
    roster = roster_in_force(lay)
    revoked = {f"node-{e.index}" for e in roster.entries if not e.active} if roster is not None else set()
    gone = held_back(lay)
    for p in procs:
        if not sup_alive:
            p["pid"] = left.get(p["name"]) or None
        running = sup_alive or p["name"] in left
        p["revoked"] = p["name"] in revoked
        if p["name"] in gone:
            p["held_back"] = gone[p["name"]]
        p["healthy"] = bool(probe and running and (p.get("pid") or not p["revoked"]) and check_health(lay, str(p["endpoint"]), 1.0))
        p["restarts"] = info.get("restarts", {}).get(p["name"], 0)
    state = info.get("status") if sup_alive else ("unsupervised" if left else "stopped")
    doc = {"dir": str(lay.dir), "status": state, "threshold": info["threshold"], "nodes": len(info["nodes"]),
           "supervisor_pid": sup_pid or None, "processes": procs,
           "ca_cert": info["ca_cert"], "certs": info["certs"]}
    if isinstance(info.get("metrics"), dict):
        doc["metrics"] = {str(k): str(v) for k, v in info["metrics"].items()}
    if roster is not None:
        doc["roster"] = {"version": roster.version, "active": [e.index for e in roster.entries if e.active],
                         "revoked": [e.index for e in roster.entries if not e.active]}
    return doc


def cluster_shape(lay: Layout) -> str:
    """``T-of-N`` of the nodes the roster in force keeps (``3-of-5``), naming the revoked ones
    the supervisor does not start (``3-of-5 (revoked, not started: node-3)``)."""
    revoked = revoked_names(lay)
    shape = f"{lay.threshold}-of-{lay.nodes - len(revoked)}"
    return shape + (f" (revoked, not started: {', '.join(sorted(revoked, key=_node_number))})" if revoked else "")


def _node_number(name: str) -> int:
    return int(name.rpartition("-")[2])


_HELD_BACK = {
    "wiped": "wiped (its host is gone); 'mpc-cluster replace-node --dir {dir} {n}' makes a new one",
    "replaced": ("replaced; started once the roster names its new keys "
                 "('mpc node replace {n} --enrolment FILE', approved; then 'mpc-cluster up --dir {dir}')"),
}


def _activate_ready(lay: Layout) -> list[int]:
    """Activate the replaced nodes the roster in force names (:func:`mpcnet.cluster.replace.activate`);
    their indices."""
    return [i for i in ready_nodes(lay) if activate(lay, i)]


def status_ok(doc: dict[str, Any]) -> bool:
    """``mpc-cluster status`` exits 0: running, and every process healthy except revoked nodes
    (which take part in nothing, whether their process still runs or was not started)."""
    return doc["status"] == "running" and all(p["healthy"] or p.get("revoked") for p in doc["processes"])


@cli.command("status", epilog=EPILOG)
@_dir_option("the cluster directory")
@_json_option
def cmd_status(directory: Path, as_json: bool) -> int:
    """Processes, endpoints and health (exit 3 unless running and healthy)."""
    lay = _layout(directory)
    info = _read_info(lay)
    if info is None:
        message = escape(f"mpc-cluster: {lay.dir}: not running (no cluster.json)")
        if as_json:  # stdout stays one JSON document
            print(message, file=sys.stderr)
            print(json.dumps({"dir": str(lay.dir), "status": "stopped", "supervisor_pid": None, "processes": []}, indent=2))
        else:
            print(message)
        return EXIT_NOT_RUNNING
    try:
        doc = print_status(lay, info, as_json=as_json)
    except ClusterError as e:
        raise _usage(str(e)) from None
    return 0 if status_ok(doc) else EXIT_NOT_RUNNING


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


@cli.command("stop", epilog=EPILOG)
@_dir_option("the cluster directory")
def cmd_stop(directory: Path) -> int:
    """Stop the cluster (its data stays in DIR); exit 1 if a process of it is still running."""
    lay = _layout(directory)
    with _one_up(lay.dir, STOP_WAIT_FOR_UP_S, Progress(quiet=False)):  # an 'up' under way: stop what it starts
        return _stop(lay)


def _stop(lay: Layout) -> int:
    pid = _supervisor_pid(lay)
    if pid == 0:
        raise Failed(f"{lay.dir}: the supervisor is starting (its pid is not written yet); try again")
    if pid is None:
        left = _leftovers(lay)
        if not left:
            print(escape(f"mpc-cluster: {lay.dir}: not running"))
            return 0
        _stop_leftovers(left)
        _check_stopped(lay)
        print(escape(f"mpc-cluster: stopped {lay.dir} ({_describe(left)} had no supervisor)"))
        return 0
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):  # should not happen: kill the supervisor and what it started
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _stop_leftovers(_leftovers(lay))  # found through their locks, like the supervisor
    _check_stopped(lay)
    print(escape(f"mpc-cluster: stopped {lay.dir}"))
    return 0


def _check_stopped(lay: Layout) -> None:
    """Failed (exit 1) if a process of the cluster still holds its data directory."""
    deadline = time.monotonic() + 2.0
    while (left := _leftovers(lay)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if left:
        raise Failed(f"{lay.dir}: still running after stop: {_describe(left)}")


@cli.command("add-node", epilog=EPILOG)
@_dir_option("the directory of a running cluster")
@click.option("--timeout", type=Seconds(3600), default=300.0, show_default=True,
              help="seconds to wait for the node to be healthy and for the resulting reshares")
@_json_option
@click.option("--quiet", "-q", is_flag=True, help="no progress lines on stderr")
def cmd_add_node(directory: Path, timeout: float, as_json: bool, quiet: bool) -> int:
    """Enrol one more node: keys and certificate for node-(max index + 1), the roster change
    signed by the dev admins (admin1, admin2) and applied through the coordinator; the running
    supervisor starts the node; waits until every key is reshared to the new set of nodes."""
    from mpcnet.client.errors import MpcError
    from mpcnet.cluster.addnode import add_node_to_cluster, signal_supervisor

    lay = _layout(directory)
    pid = _supervisor_pid(lay)
    if not pid:
        raise Failed(f"{lay.dir}: not running (or its supervisor is still starting); run 'mpc-cluster up --dir {lay.dir}' first")
    with _one_up(lay.dir, STOP_WAIT_FOR_UP_S, Progress(quiet=quiet)):  # no up/stop/add-node meanwhile
        try:
            doc = add_node_to_cluster(lay, signal_supervisor(pid), timeout=timeout, progress=Progress(quiet=quiet))
        except ClusterError as e:
            raise _usage(str(e)) from None
        except MpcError as e:  # the coordinator refused or did not answer: what it said, one line
            raise Failed(f"{e.code.name}: {e.message} (run 'mpc-cluster add-node --dir {lay.dir}' again to resume)") from None
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        print(escape(f"mpc-cluster: {doc['name']} enrolled at {doc['endpoint']} (roster version {doc['roster_version']}); "
                     f"{len(doc['operations'])} key operation(s) done"))
    return 0


@cli.command("wipe-node", epilog=EPILOG)
@_dir_option("the cluster directory")
@click.argument("index", type=UInt(1, MAX_LOCAL_NODES), metavar="N")
@_json_option
@click.option("--quiet", "-q", is_flag=True, help="no progress lines on stderr")
def cmd_wipe_node(directory: Path, index: int, as_json: bool, quiet: bool) -> int:
    """Lose node N's host (recovery rehearsals): kill it (SIGKILL) and delete its data, keys and
    certificate; the supervisor does not restart it and 'up' does not recreate it."""
    from mpcnet.cluster.replace import wipe_node

    lay = _layout(directory)
    with _one_up(lay.dir, STOP_WAIT_FOR_UP_S, Progress(quiet=quiet)):
        try:
            doc = wipe_node(lay, index, progress=Progress(quiet=quiet))
        except ClusterError as e:
            raise _usage(str(e)) from None
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        print(escape(f"mpc-cluster: {doc['name']} wiped ({len(doc['deleted'])} files deleted"
                     + (f", pid {doc['killed_pid']} killed)" if doc["killed_pid"] else ", it was not running)")))
    return 0


@cli.command("replace-node", epilog=EPILOG)
@_dir_option("the cluster directory")
@click.argument("index", type=UInt(1, MAX_LOCAL_NODES), metavar="N")
@click.option("--out", type=PathArg("FILE", resolve=True), default=None,
              help="where to write the enrolment file [default: DIR/enrolment-node-N.json]")
@_json_option
@click.option("--quiet", "-q", is_flag=True, help="no progress lines on stderr")
def cmd_replace_node(directory: Path, index: int, out: Path | None, as_json: bool, quiet: bool) -> int:
    """Make a new host for wiped node N: new TLS certificate, identity and encryption keys, an
    empty store, and the enrolment file for 'mpc node replace N --enrolment FILE'. Once that
    roster change is applied, 'mpc-cluster up' starts the node."""
    from mpcnet.cluster.replace import replace_node

    lay = _layout(directory)
    with _one_up(lay.dir, STOP_WAIT_FOR_UP_S, Progress(quiet=quiet)):
        try:
            doc = replace_node(lay, index, out=out, progress=Progress(quiet=quiet))
        except ClusterError as e:
            raise _usage(str(e)) from None
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        print(escape(f"mpc-cluster: {doc['name']} replaced (new keys, empty store) at {doc['endpoint']}; enrolment file "
                     f"{doc['enrolment']}; next: 'mpc node replace {index} --enrolment {doc['enrolment']}' (approved), "
                     f"then 'mpc-cluster up --dir {lay.dir}'"))
    return 0


@cli.command("_supervise", hidden=True)
@_dir_option("the cluster directory")
def cmd_supervise(directory: Path) -> int:
    """The detached supervisor (``up`` starts it); its progress goes to its stdout, marked."""
    return supervise(_layout(directory), echo=False, progress=_to_file)


from mpcnet.cluster.prometheus_cmd import cmd_prometheus  # noqa: E402  (issue 15: DIR/prometheus/, run Prometheus)

cli.add_command(cmd_prometheus)


def main(argv: list[str] | None = None) -> int:
    """``mpc-cluster``: returns the exit code (see :data:`EPILOG`); never raises, never prints a
    traceback."""
    return cliutil.run(cli, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
