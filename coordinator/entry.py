"""The ``mpc-coordinator`` console script: :func:`mpcnet.common.entry.run_entry` imports
:mod:`coordinator.main` inside a ``try``, so a Ctrl-C while grpc and cryptography are still being
imported ends with ``mpc-coordinator: interrupted`` and exit 130 instead of a traceback."""

from __future__ import annotations

from collections.abc import Callable

from mpcnet.common.entry import run_entry


def main() -> int:
    def load() -> Callable[[], int]:
        from coordinator.main import main as run

        return run

    return run_entry("mpc-coordinator", load)
