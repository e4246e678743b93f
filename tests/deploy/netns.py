"""Separate hosts on one machine: Linux network namespaces on a private bridge (issue 13).

A :class:`Network` gives every *namespace* (a simulated machine: ``node-1``, ``coordinator``,
``people``) its own network stack with its own IPv4 address on a private bridge, its own
``/etc/hosts`` (``ip netns exec`` bind-mounts ``/etc/netns/NS/hosts`` over it) naming every
machine as ``NAME.mpc.test``, its own loopback, and any other /etc files it is given (e.g. its
own ``softhsm/softhsm2.conf``: its own HSM). Several *hosts* (operators: ``ca``,
``admin1``, ...) may share one namespace; each host has its own working directory. Commands run as
``ip netns exec NS bash -euo pipefail -c SCRIPT`` in the host's directory; servers run in the
background with their output kept in a log file for failure messages.

Every kernel object carries the creating process id and a per-process run number (bridge
``mb<pid>n<run>``, namespaces ``mpc<pid>n<run>-<name>``), so parallel and successive runs never
meet, and :meth:`Network.close` always removes what this run made: every process of every
namespace (``ip netns pids``), the namespaces, the bridge, the ``/etc/netns`` directories (and a
new run first removes what a run killed before its teardown left: :func:`remove_stale`). The
bridge does not pass its traffic to the machine's firewall (``nf_call_iptables 0``), so a host
whose FORWARD policy is DROP (Docker's) does not cut it. Needs root and ``ip`` (iproute2):
:func:`unavailable` says why not.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DOMAIN = "mpc.test"
SUBNET = "10.213.13"
"""The bridge's /24 (addresses .1 on up, one per namespace); private to the namespaces, never
routed from the machine itself (the bridge has no address), so parallel runs may reuse it."""
NETNS_ETC = Path("/etc/netns")


class NetnsError(Exception):
    """An ``ip`` command failed (its stderr in the message)."""


def unavailable() -> str | None:
    """Why namespaces cannot be used here (not root, no ``ip``), or None when they may."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); run the suite as root to include this test"
    if shutil.which("ip") is None:
        return "no 'ip' command (Debian package iproute2)"
    return None


def _ip(*args: str) -> str:
    """Run ``ip ARGS``; its stdout (NetnsError with its stderr on failure)."""
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {r.stderr.strip() or r.returncode}")
    return r.stdout


STALE_NS = re.compile(r"mpc(([0-9]+)n[0-9]+)-[a-z0-9-]+")
STALE_BRIDGE = re.compile(r"mb(([0-9]+)n[0-9]+)")
_MADE: set[str] = set()
"""The tags of the networks this process built: leftovers named with this process's pid and
another tag are a killed run's whose pid this process now has (pid reuse), hence stale."""
_RUNS = itertools.count()
"""This process's networks so far: a network's names are new even when the previous one's are
still being destroyed (the kernel removes a deleted namespace's interfaces asynchronously)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(m: re.Match[str]) -> bool:
    pid = int(m.group(2))
    return (pid == os.getpid() and m.group(1) not in _MADE) or (pid != os.getpid() and not _alive(pid))


def remove_stale() -> None:
    """Remove what runs that died without their teardown left (SIGKILLed pytest): namespaces,
    their processes, bridges and /etc/netns directories whose creating process is gone (or is
    this process, which did not make them: a killed run's pid reused)."""
    try:
        listed = _ip("netns", "list").split()
    except NetnsError:
        return
    for name in listed:
        m = STALE_NS.fullmatch(name)
        if m is None or not _stale(m):
            continue
        try:
            for pid in _ip("netns", "pids", name).split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        except NetnsError:
            pass
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
    try:
        links = _ip("-o", "link", "show", "type", "bridge")
    except NetnsError:
        return
    for line in links.splitlines():
        parts = line.split(":")
        name = parts[1].strip() if len(parts) > 1 else ""
        m = STALE_BRIDGE.fullmatch(name)
        if m is not None and _stale(m):
            subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=30)


@dataclass(frozen=True)
class Namespace:
    """One simulated machine: ``name`` (``node-1``), the kernel name ``ns``, its address ``ip``
    and host name ``fqdn`` (``node-1.mpc.test``)."""

    name: str
    ns: str
    ip: str

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{DOMAIN}"


@dataclass(frozen=True)
class Host:
    """One operator's machine view: ``name`` (``admin1``), the namespace it runs in, its own
    working directory ``dir``."""

    name: str
    namespace: Namespace
    dir: Path


@dataclass
class Background:
    """A process started by :meth:`Network.spawn`: its Popen, the host, the log file."""

    host: Host
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 4000) -> str:
        """The last ``chars`` characters of its output (for failure messages)."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class Network:
    """The namespaces ``machines`` (names) on one bridge, and the hosts placed in them
    (``hosts``: host name -> machine name), under ``root`` (one directory per host).

    Use as a context manager: ``__enter__`` builds everything (NetnsError if the kernel refuses;
    whatever was built is removed again), ``__exit__`` always tears down."""

    root: Path
    machines: Sequence[str]
    hosts: Mapping[str, str]
    env: Mapping[str, str] = field(default_factory=dict)
    etc: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Machine -> {path under /etc: text}: files that machine sees in its own /etc (``ip netns
    exec`` bind-mounts ``/etc/netns/NS/TOP`` over ``/etc/TOP`` for every TOP entry there)."""
    tag: str = field(default_factory=lambda: f"{os.getpid()}n{next(_RUNS) % 100}")
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    background: list[Background] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"mb{self.tag}"

    def __enter__(self) -> Network:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        if len(self.machines) > 250 or len(set(self.machines)) != len(self.machines):
            raise ValueError("machines: at most 250 distinct names")
        remove_stale()
        _MADE.add(self.tag)
        try:  # bridged traffic bypasses the machine's firewall (a Docker host's FORWARD policy is DROP)
            _ip("link", "add", self.bridge, "type", "bridge", "nf_call_iptables", "0", "nf_call_ip6tables", "0", "nf_call_arptables", "0")
        except NetnsError:  # an older iproute2: a plain bridge
            _ip("link", "add", self.bridge, "type", "bridge")
        _ip("link", "set", self.bridge, "up")
        for i, name in enumerate(self.machines, start=1):
            m = Namespace(name, f"mpc{self.tag}-{name}", f"{SUBNET}.{i}")
            self.namespaces[name] = m
            try:
                _ip("netns", "add", m.ns)
            except NetnsError:  # two runs adding their first namespaces at once may race on /run/netns: once more
                time.sleep(0.2)
                _ip("netns", "add", m.ns)
            outside = f"v{self.tag}x{i}"  # at most 15 characters: v + pid (7) + n + run (2) + x + index (3)
            _ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", m.ns)
            _ip("link", "set", outside, "master", self.bridge, "up")
            _ip("-n", m.ns, "addr", "add", f"{m.ip}/24", "dev", "eth0")
            _ip("-n", m.ns, "link", "set", "eth0", "up")
            _ip("-n", m.ns, "link", "set", "lo", "up")
        for m in self.namespaces.values():  # exec needs a mount namespace too (CAP_SYS_ADMIN), not just CAP_NET_ADMIN
            r = subprocess.run(["ip", "netns", "exec", m.ns, "true"], capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise NetnsError(f"ip netns exec {m.ns}: {r.stderr.strip() or r.returncode}")
        hosts_file = "127.0.0.1\tlocalhost\n::1\tlocalhost\n" + "".join(
            f"{m.ip}\t{m.fqdn}\n" for m in self.namespaces.values()
        )
        for m in self.namespaces.values():
            etc = NETNS_ETC / m.ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts_file)
            for rel, text in self.etc.get(m.name, {}).items():
                target = etc / rel
                if ".." in Path(rel).parts or Path(rel).is_absolute():
                    raise ValueError(f"etc: {rel} is not a path under /etc")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
        for host, machine in self.hosts.items():
            if machine not in self.namespaces:
                raise ValueError(f"hosts: {host} is placed in an unknown machine {machine}")
            (self.root / host).mkdir(parents=True, exist_ok=True)

    def host(self, name: str) -> Host:
        """The host ``name`` (KeyError if there is none)."""
        return Host(name, self.namespaces[self.hosts[name]], self.root / name)

    def _argv(self, host: Host, script: str) -> list[str]:
        return ["ip", "netns", "exec", host.namespace.ns, "bash", "-euo", "pipefail", "-c", script]

    def _env(self, extra: Mapping[str, str]) -> dict[str, str]:
        return {**os.environ, **self.env, **extra}

    def run(self, host: Host, script: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> str:
        """Run ``script`` with bash (``-euo pipefail``) in ``host``'s namespace and directory; its
        stdout. AssertionError with the script, exit code, stdout, stderr and the tails of the
        background processes' output and of every ``ROOT/HOST/*/*.log`` when it fails or passes
        ``timeout`` seconds."""
        try:
            r = subprocess.run(
                self._argv(host, script), cwd=host.dir, env=self._env(env or {}), capture_output=True, text=True,
                timeout=timeout, start_new_session=True,
            )
        except subprocess.TimeoutExpired as e:
            raise AssertionError(self._report(host, script, f"timed out after {timeout} s", e.stdout, e.stderr)) from None
        if r.returncode != 0:
            raise AssertionError(self._report(host, script, f"exit {r.returncode}", r.stdout, r.stderr))
        return r.stdout

    def spawn(self, host: Host, script: str, env: Mapping[str, str] | None = None, log_name: str = "serve") -> Background:
        """Start ``script`` in the background in ``host``'s namespace and directory (its own
        process group); stdout and stderr go to ``ROOT/logs/HOST.LOG_NAME.log``."""
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        log = logs / f"{host.name}.{log_name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                self._argv(host, script), cwd=host.dir, env=self._env(env or {}), stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        bg = Background(host, proc, log)
        self.background.append(bg)
        return bg

    def _report(self, host: Host, script: str, what: str, stdout: object, stderr: object) -> str:
        def text(x: object) -> str:
            return x.decode(errors="replace") if isinstance(x, bytes) else str(x or "")

        logs = "".join(
            f"\n--- {b.host.name} ({b.log.name}, {'running' if b.proc.poll() is None else f'exit {b.proc.returncode}'}) ---\n{b.tail()}"
            for b in self.background
        )
        for f in sorted(self.root.glob("*/*/*.log")):  # what the servers log to their own files (HOST/DIR/NAME.log)
            logs += f"\n--- {f.relative_to(self.root)} ---\n{f.read_text(errors='replace')[-3000:]}"
        return (
            f"{host.name} ({host.namespace.name}): {what}\n--- script ---\n{script}\n--- stdout ---\n{text(stdout)[-4000:]}"
            f"\n--- stderr ---\n{text(stderr)[-4000:]}{logs}"
        )

    def pids(self, machine: str) -> list[int]:
        """Every process in ``machine``'s namespace (``ip netns pids``)."""
        m = self.namespaces[machine]
        try:
            out = _ip("netns", "pids", m.ns)
        except NetnsError:
            return []
        return [int(p) for p in out.split()]

    def kill_machine(self, machine: str, timeout: float = 10) -> None:
        """SIGKILL every process in ``machine``'s namespace and wait until none is left (a
        machine losing power); AssertionError if some survive ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while pids := self.pids(machine):
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for b in self.background:  # reap our own children, so they do not linger as zombies
                if b.host.namespace.name == machine:
                    try:
                        b.proc.wait(timeout=0.2)
                    except subprocess.TimeoutExpired:
                        pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{machine}: processes {pids} survive SIGKILL")
            time.sleep(0.05)

    def close(self) -> None:
        """Remove everything this run made (idempotent; never raises): processes, namespaces,
        the bridge, the ``/etc/netns`` directories."""
        for b in self.background:
            if b.proc.poll() is None:
                try:
                    os.killpg(b.proc.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
        for b in self.background:
            try:
                b.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for name, m in self.namespaces.items():
            try:
                self.kill_machine(name)
            except AssertionError:
                pass
            for b in self.background:
                if b.proc.poll() is None and b.host.namespace is m:
                    b.proc.kill()
            subprocess.run(["ip", "netns", "del", m.ns], capture_output=True, timeout=30)
            shutil.rmtree(NETNS_ETC / m.ns, ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)
        for b in self.background:
            if b.proc.poll() is None:
                b.proc.kill()
                b.proc.wait()
