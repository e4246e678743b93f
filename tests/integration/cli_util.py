"""Run the ``mpc`` CLI in the test process: the same ``mpcnet.client.cli.main``, exit code and output as
``python -m mpcnet.client.cli``, without a Python start (and grpc import) per call. Tests that must show
the command works as a process run it with subprocess (tests/integration/test_cli.py)."""

from __future__ import annotations

import contextlib
import io
import subprocess

from mpcnet.client.cli import main as cli_main


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``mpc ARGS`` in this process: mpcnet.client.cli.main with stdout and stderr captured; the exit code
    is main's return value, or the SystemExit code (argparse usage errors exit 2)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    p = subprocess.CompletedProcess(["mpc", *args], code, out.getvalue(), err.getvalue())
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}\nstdout:{p.stdout}\nstderr:{p.stderr}")
    return p
