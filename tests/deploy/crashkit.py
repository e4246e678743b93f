"""Kill a real command with SIGKILL at a random moment, for the crash tests (issue 13, R2).

``python -m tests.deploy.crashkit kill ENTRY TARGET LO HI -- ARGS...`` runs ``ENTRY`` (``module:function``
taking an argv list, e.g. ``mpc_node.main:main``) with ``ARGS``; when the function ``TARGET``
(``module:Class.method`` or ``module:function``) is first entered, a timer sends the process
SIGKILL after a uniform random ``LO``..``HI`` seconds: the kill lands inside that step (a token's
key generation, a store transaction) or shortly after, as an operator's ``kill -9`` would, with
nothing of the process given a chance to clean up. ``TARGET`` ``-`` arms the timer at start;
``LO`` == ``HI`` kills exactly on entering ``TARGET`` (the step does not run). Mode ``pause``
instead sleeps ``LO``..``HI`` s on every entry of ``TARGET`` (two commands racing: the window between their read and their write made wide).

:func:`run_killed` is the test side: it returns the completed process (returncode -9 when the
kill landed, else the command's own exit code).
"""

from __future__ import annotations

import importlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _resolve(spec: str) -> tuple[Any, str]:
    module, _, rest = spec.partition(":")
    owner: Any = importlib.import_module(module)
    *path, attr = rest.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, attr


def _arm(lo: float, hi: float) -> None:
    delay = random.uniform(lo, hi)  # noqa: S311 - a test's random moment, not a secret
    timer = threading.Timer(delay, lambda: os.kill(os.getpid(), signal.SIGKILL))
    timer.daemon = True
    timer.start()


def _main(argv: list[str]) -> int:
    mode, entry, target, lo, hi, sep, *args = argv
    assert sep == "--" and mode in ("kill", "pause")
    low, high = float(lo), float(hi)
    if mode == "pause":
        owner, attr = _resolve(target)
        slowed: Callable[..., Any] = getattr(owner, attr)

        def paused(*a: Any, **k: Any) -> Any:
            time.sleep(random.uniform(low, high))  # noqa: S311
            return slowed(*a, **k)

        setattr(owner, attr, paused)
    elif target == "-":
        _arm(low, high)
    else:
        owner, attr = _resolve(target)
        original: Callable[..., Any] = getattr(owner, attr)
        armed = threading.Event()

        def wrapped(*a: Any, **k: Any) -> Any:
            if not armed.is_set():
                armed.set()
                _arm(low, high)
                if low == high:
                    time.sleep(low + 5)  # the kill lands here, before the step
            return original(*a, **k)

        setattr(owner, attr, wrapped)
    owner, attr = _resolve(entry)
    rc = int(getattr(owner, attr)(args) or 0)
    time.sleep(high)  # a kill due after the command's end still lands (the state is the same)
    return rc


def run_killed(entry: str, target: str, lo: float, hi: float, args: Sequence[str], *, env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``entry`` with ``args`` in a child Python, SIGKILLed ``lo``..``hi`` s after ``target`` is entered."""
    return subprocess.run(
        [sys.executable, "-m", "tests.deploy.crashkit", "kill", entry, target, str(lo), str(hi), "--", *args],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=timeout,
    )  # fmt: skip


def start_paused(entry: str, target: str, lo: float, hi: float, args: Sequence[str], *, env: dict[str, str] | None = None,
                 ) -> subprocess.Popen[str]:
    """Start ``entry`` with ``args`` in a child Python that sleeps ``lo``..``hi`` s on each entry of ``target``."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.deploy.crashkit", "pause", entry, target, str(lo), str(hi), "--", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, **(env or {})},
    )  # fmt: skip


def run(entry: str, args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``entry`` with ``args`` in a child Python, to completion (no kill)."""
    module, _, func = entry.partition(":")
    code = f"import sys; from {module} import {func} as entry; sys.exit(entry(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=timeout)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
