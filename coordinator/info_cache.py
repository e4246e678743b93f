"""The last :class:`SignRequestInfo` of each watched signing request, built and serialised once
for every watcher, forgotten when the request changes.

A ``WatchSignRequest`` stream wakes on every change of its request (and on a backstop poll);
without this each wake of each watcher re-reads the request and its approvals, looks up the
policy and serialises the answer. :class:`InfoCache` keeps ``(record, info, serialised info)``
per request id. Every change of a request is followed by ``SignRequests._notify`` which calls
:meth:`InfoCache.invalidate` (``None``: every request, e.g. after recovery).

A reader takes a :meth:`~InfoCache.token` BEFORE it reads the database and offers what it read
with :meth:`~InfoCache.put`; the value is kept only if the request was not invalidated in
between (the token names the request's slot and its version), so a read that raced with a
change is never cached. At most ``capacity`` requests are kept (least recently used first out;
an evicted slot's tokens are refused).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")
CAPACITY = 4096  # requests whose last info is kept


class _Slot(Generic[V]):
    __slots__ = ("value", "version")

    def __init__(self) -> None:
        self.version = 0
        self.value: V | None = None


@dataclass(frozen=True)
class Token(Generic[V]):
    """What :meth:`InfoCache.put` checks: the slot and its version when the read began."""

    slot: _Slot[V]
    version: int


class InfoCache(Generic[V]):
    """Request id -> its last cached value. Thread-safe."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity: must be at least 1")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._slots: OrderedDict[str, _Slot[V]] = OrderedDict()

    def get(self, request_id: str) -> V | None:
        """The cached value of ``request_id``, or None."""
        with self._lock:
            slot = self._slots.get(request_id)
            if slot is None:
                return None
            self._slots.move_to_end(request_id)
            return slot.value

    def token(self, request_id: str) -> Token[V]:
        """Take before reading the database for ``request_id``."""
        with self._lock:
            slot = self._slots.get(request_id)
            if slot is None:
                slot = self._slots[request_id] = _Slot()
                while len(self._slots) > self.capacity:
                    self._slots.popitem(last=False)
            else:
                self._slots.move_to_end(request_id)
            return Token(slot, slot.version)

    def put(self, request_id: str, token: Token[V], value: V) -> bool:
        """Keep ``value`` (read after ``token`` was taken) unless ``request_id`` changed (or its
        slot was evicted) since; True if kept."""
        with self._lock:
            slot = self._slots.get(request_id)
            if slot is not token.slot or slot.version != token.version:
                return False
            slot.value = value
            return True

    def invalidate(self, request_id: str | None) -> None:
        """``request_id`` changed (None: any may have): drop what is cached for it."""
        with self._lock:
            if request_id is None:
                for slot in self._slots.values():
                    slot.version += 1
                    slot.value = None
                self._slots.clear()
                return
            found = self._slots.get(request_id)
            if found is not None:
                found.version += 1
                found.value = None

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for s in self._slots.values() if s.value is not None)
