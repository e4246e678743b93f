"""The console scripts' entry points (``pyproject.toml`` ``[project.scripts]``).

Each imports its command line only inside a ``try``: a Ctrl-C in the first moments, while grpc,
cryptography and click are still being imported, ends with ``PROG: interrupted`` and exit 130
instead of a traceback (the commands themselves handle Ctrl-C once they run); see
:func:`mpcnet.common.entry.run_entry`, which the servers' entry functions use too.
"""

from __future__ import annotations

from collections.abc import Callable

from mpcnet.common.entry import run_entry as _run


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
