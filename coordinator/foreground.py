"""Foreground operations in progress, so that background work stands aside for them.

A foreground operation needs nodes that answer promptly: a keygen runs a DKG over all n nodes, a
refresh or reshare a session over its committees, a recovery ceremony's run sends each target
node its pieces. Background work (the presignature refiller, :mod:`coordinator.pool`; the FROST
nonce refill, :mod:`coordinator.frost_sign`; the pools' reconciles) makes the same nodes busy, and
a node busy enough answers late: a foreground operation then failed, or a healthy node was judged
down.

Such an operation *holds* the keys and nodes it needs for as long as it runs
(:meth:`Foreground.hold`, a context manager). Background work asks before it starts anything new
(:meth:`Foreground.key_held`, :meth:`Foreground.nodes_held`) and starts nothing for a held key or
on a held node; what already runs finishes (a presign session is never cut mid-protocol). When a
hold ends the listeners are called (:meth:`Foreground.listen`: the refiller wakes at once and
resumes, rather than at its next tick). Nothing here is durable: a key operation recorded but not
yet running (after a restart) is covered by its ``running`` row (:meth:`coordinator.keyops.KeyOperations.busy_keys`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

log = logging.getLogger("coordinator.foreground")


@dataclass(frozen=True)
class Hold:
    """One foreground operation in progress: ``what`` it is (for logs, e.g. ``keygen request
    req-1``), the key ids and node indices (roster indices) it holds."""

    what: str
    keys: frozenset[bytes]
    nodes: frozenset[int]


class Foreground:
    """The foreground operations in progress (module docstring). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holds: dict[int, Hold] = {}
        self._ids = itertools.count(1)
        self._listeners: list[Callable[[], None]] = []

    def listen(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` (quick, never blocking) each time a hold ends."""
        with self._lock:
            self._listeners.append(fn)

    @contextlib.contextmanager
    def hold(self, what: str, *, keys: Iterable[bytes] = (), nodes: Iterable[int] = ()) -> Iterator[Hold]:
        """Hold ``keys`` and ``nodes`` while the ``with`` block runs (released however it ends)."""
        h = Hold(what, frozenset(keys), frozenset(nodes))
        with self._lock:
            token = next(self._ids)
            self._holds[token] = h
        log.debug("%s: background refills stand aside (keys %s, nodes %s)", what,
                  sorted(k.hex()[:16] for k in h.keys), sorted(h.nodes))
        try:
            yield h
        finally:
            with self._lock:
                del self._holds[token]
                listeners = list(self._listeners)
            for fn in listeners:
                try:
                    fn()
                except Exception:  # a listener's bug must not fail the foreground operation
                    log.exception("a foreground listener failed")

    def key_held(self, key_id: bytes) -> bool:
        """True while a foreground operation holds key ``key_id``."""
        with self._lock:
            return any(key_id in h.keys for h in self._holds.values())

    def keys_held(self) -> frozenset[bytes]:
        """The key ids held now."""
        with self._lock:
            return frozenset(k for h in self._holds.values() for k in h.keys)

    def nodes_held(self) -> frozenset[int]:
        """The node indices held now."""
        with self._lock:
            return frozenset(i for h in self._holds.values() for i in h.nodes)

    def holds(self) -> list[Hold]:
        """The holds in progress (a copy), oldest first."""
        with self._lock:
            return [self._holds[t] for t in sorted(self._holds)]
