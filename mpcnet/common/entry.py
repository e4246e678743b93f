"""What the console scripts' entry functions share (:mod:`mpcnet.entry`, :mod:`mpc_node.entry`,
:mod:`coordinator.entry`): the command is imported inside a ``try``, so a Ctrl-C while grpc,
cryptography and click are still being imported ends with ``PROG: interrupted`` and exit 130
instead of a traceback. This module imports nothing heavy (``mpcnet``, ``mpcnet.common``,
``mpc_node`` and ``coordinator`` have light ``__init__`` modules)."""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_INTERRUPTED = 130


def run_entry(prog: str, load: Callable[[], Callable[[], int]]) -> int:
    """``load()`` (which imports the command and returns its ``main``), then ``main()``; exit 130
    with one line on stderr if interrupted while loading."""
    try:
        main = load()
    except KeyboardInterrupt:
        try:
            sys.stderr.write(f"{prog}: interrupted\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        return EXIT_INTERRUPTED
    return main()
