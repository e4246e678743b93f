"""The ``mpc-coordinator`` console script: imports :mod:`coordinator.main` inside a ``try``, so a Ctrl-C while
grpc and cryptography are still being imported ends with ``mpc-coordinator: interrupted`` and exit 130
instead of a traceback (see :mod:`mpcnet.entry` for the client commands)."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from coordinator.main import main as run
    except KeyboardInterrupt:
        try:
            sys.stderr.write("mpc-coordinator: interrupted\n")
        except (OSError, ValueError):
            pass
        return 130
    return run()
