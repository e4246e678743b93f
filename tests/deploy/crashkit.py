"""Kill a real command with SIGKILL at a random moment, for the crash tests (issue 13, R2).

``python -m tests.deploy.crashkit ENTRY TARGET LO HI -- ARGS...`` runs ``ENTRY`` (``module:function``
taking an argv list, e.g. ``mpc_node.main:main``) with ``ARGS``; when the function ``TARGET``
(``module:Class.method`` or ``module:function``) is first entered, a timer sends the process
SIGKILL after a uniform random ``LO``..``HI`` seconds: the kill lands inside that step (a token's
key generation, a store transaction) or shortly after, as an operator's ``kill -9`` would, with
nothing of the process given a chance to clean up. ``TARGET`` ``-`` arms the timer at start.

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
    entry, target, lo, hi, sep, *args = argv
    assert sep == "--"
    low, high = float(lo), float(hi)
    if target == "-":
        _arm(low, high)
    else:
        owner, attr = _resolve(target)
        original: Callable[..., Any] = getattr(owner, attr)
        armed = threading.Event()

        def wrapped(*a: Any, **k: Any) -> Any:
            if not armed.is_set():
                armed.set()
                _arm(low, high)
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
        [sys.executable, "-m", "tests.deploy.crashkit", entry, target, str(lo), str(hi), "--", *args],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=timeout,
    )  # fmt: skip


def run(entry: str, args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``entry`` with ``args`` in a child Python, to completion (no kill)."""
    module, _, func = entry.partition(":")
    code = f"import sys; from {module} import {func} as entry; sys.exit(entry(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=timeout)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
