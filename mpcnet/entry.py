"""The console scripts' entry points (``pyproject.toml`` ``[project.scripts]``).

Each imports its command line only inside a ``try``: a Ctrl-C in the first moments, while grpc,
cryptography and click are still being imported, ends with ``PROG: interrupted`` and exit 130
instead of a traceback (the commands themselves handle Ctrl-C once they run). ``mpcnet``,
``mpc_node`` and ``coordinator`` have light ``__init__`` modules, so nothing heavy is imported
before these functions run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_INTERRUPTED = 130


def _interrupted(prog: str) -> int:
    try:
        sys.stderr.write(f"{prog}: interrupted\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    return EXIT_INTERRUPTED


def _run(prog: str, load: Callable[[], Callable[[], int]]) -> int:
    try:
        main = load()
    except KeyboardInterrupt:
        return _interrupted(prog)
    return main()


def mpc() -> int:
    """``mpc``: :func:`mpcnet.client.cli.main`."""

    def load() -> Callable[[], int]:
        from mpcnet.client.cli import main

        return main

    return _run("mpc", load)


def mpc_cluster() -> int:
    """``mpc-cluster``: :func:`mpcnet.cluster.cli.main`."""

    def load() -> Callable[[], int]:
        from mpcnet.cluster.cli import main

        return main

    return _run("mpc-cluster", load)
