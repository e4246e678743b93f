"""The coordinator's node handles, following the roster in force (issue 11 item 3).

Signing, policy sync, health probes, key generation and the request handlers all read the
coordinator's node handles from their own threads while a roster change may add a node, move one
to another endpoint or revoke one. :class:`NodeRegistry` is therefore copy-on-write: every
membership change builds a new ``dict`` and swaps the reference under a lock; a dict once
published is never mutated, so iterating ``items()``/``values()``/``keys()`` (views of one
snapshot) can never see a change half made, and ``snapshot()`` gives a caller one consistent set
for a whole operation.

A handle that leaves (its node revoked, or moved to another endpoint: a new handle dials the new
one) is closed at once, so it is never dialed again; indexing (``registry[i]``) still finds it,
closed, so that an operation begun before the change can still *name* the node in its errors.
Iteration, ``len``, ``in`` and ``get`` see only the handles in force.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView

import grpc

from coordinator.config import NodeEndpoint
from coordinator.relay import NodeHandle
from governance.text import escape

log = logging.getLogger("coordinator.nodes")


class NodeRegistry(Mapping[int, NodeHandle]):
    """The handles of the active nodes of the roster in force, by roster index (thread-safe).

    ``endpoints`` is the initial set (``RosterBook.endpoints()``); ``creds`` the coordinator's
    client credentials for every channel.
    """

    def __init__(self, endpoints: Mapping[int, NodeEndpoint], creds: grpc.ChannelCredentials) -> None:
        self._creds = creds
        self._lock = threading.Lock()
        self._handles: dict[int, NodeHandle] = {i: NodeHandle(ep, creds) for i, ep in sorted(endpoints.items())}
        self._retired: dict[int, NodeHandle] = {}

    # --- reading (one published snapshot per call) ----------------------------------------------
    def snapshot(self) -> dict[int, NodeHandle]:
        """A copy of the handles in force: one consistent set for a whole operation."""
        return dict(self._handles)

    def __getitem__(self, index: int) -> NodeHandle:
        handles = self._handles
        if index in handles:
            return handles[index]
        return self._retired[index]  # KeyError if never known

    def get(self, index: int, default: NodeHandle | None = None) -> NodeHandle | None:  # type: ignore[override]
        """The handle in force for ``index``, else ``default`` (never a retired handle)."""
        return self._handles.get(index, default)

    def __contains__(self, index: object) -> bool:
        return index in self._handles

    def __iter__(self) -> Iterator[int]:
        return iter(self._handles)

    def __len__(self) -> int:
        return len(self._handles)

    def keys(self) -> KeysView[int]:
        return self._handles.keys()

    def values(self) -> ValuesView[NodeHandle]:
        return self._handles.values()

    def items(self) -> ItemsView[int, NodeHandle]:
        return self._handles.items()

    def retired(self, index: int) -> bool:
        """True if node ``index`` had a handle that was closed by a roster change (and none now)."""
        return index not in self._handles and index in self._retired

    # --- changing ------------------------------------------------------------------------------
    def follow(self, endpoints: Mapping[int, NodeEndpoint]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Make the handles those of ``endpoints`` (the active nodes of the new roster): a node
        kept at the same endpoint and name keeps its handle (and health); a new node, or one at
        another endpoint, gets a new handle; the handles that leave are closed after the swap.
        Returns ``(added or moved, removed)`` indices, increasing."""
        with self._lock:
            old = self._handles
            new: dict[int, NodeHandle] = {}
            added: list[int] = []
            for i, ep in sorted(endpoints.items()):
                h = old.get(i)
                if h is not None and h.endpoint == ep.endpoint and h.name == ep.name:
                    new[i] = h
                else:
                    new[i] = NodeHandle(ep, self._creds)
                    added.append(i)
            leaving = [h for i, h in old.items() if new.get(i) is not h]
            self._handles = new  # publish: readers see the old dict or the new one, never a mix
            for h in leaving:
                self._retired[h.index] = h
            removed = tuple(sorted(h.index for h in leaving if h.index not in new))
        for h in leaving:
            h.close()
            log.info("%s: channel to %s closed (roster change)", h.label, escape(h.endpoint))
        for i in added:
            log.info("%s: dialing %s (roster change)", new[i].label, escape(new[i].endpoint))
        return tuple(added), removed

    def close(self) -> None:
        """Close every channel (the coordinator stops)."""
        with self._lock:
            handles = list(self._handles.values())
        for h in handles:
            h.close()
