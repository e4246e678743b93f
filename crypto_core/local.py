"""In-process execution of a protocol among several parties (tests and benchmarks).

:func:`run` routes every party's :class:`RoundOutput` to the others exactly as a transport
would (broadcast part to all, direct parts to their receiver), optionally passing each part
through a ``tamper`` hook, and counts the bytes delivered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .session import Delivery, RoundOutput


class Party(Protocol):
    def start(self) -> RoundOutput: ...

    def receive(self, inbox: Mapping[int, Delivery]) -> RoundOutput | None: ...


# tamper(round, sender, receiver, part, payload) -> payload to deliver ("broadcast" or "direct")
Tamper = Callable[[int, int, int, str, bytes], bytes]


@dataclass
class RunStats:
    bytes_delivered: int = 0
    messages: int = 0
    rounds: int = 0
    per_round: list[int] = field(default_factory=list)


def route(
    outputs: Mapping[int, RoundOutput], tamper: Tamper | None = None, stats: RunStats | None = None
) -> dict[int, dict[int, Delivery]]:
    """Build every party's inbox from everybody's outputs of one round."""
    inboxes: dict[int, dict[int, Delivery]] = {k: {} for k in outputs}
    delivered = 0
    for j, out in outputs.items():
        for k in outputs:
            if k == j:
                continue
            b = out.broadcast
            d = out.direct.get(k)
            if tamper is not None:
                if b is not None:
                    b = tamper(out.round, j, k, "broadcast", b)
                if d is not None:
                    d = tamper(out.round, j, k, "direct", d)
            delivered += (len(b) if b is not None else 0) + (len(d) if d is not None else 0)
            if stats is not None:
                stats.messages += (b is not None) + (d is not None)
            inboxes[k][j] = Delivery(b, d)
    if stats is not None:
        stats.bytes_delivered += delivered
        stats.per_round.append(delivered)
        stats.rounds += 1
    return inboxes


def run(parties: Mapping[int, Party], tamper: Tamper | None = None, stats: RunStats | None = None) -> None:
    """Run all parties to completion. Raises the first party's error (parties in index order)."""
    outputs = {i: p.start() for i, p in parties.items()}
    while outputs:
        inboxes = route(outputs, tamper, stats)
        nxt: dict[int, RoundOutput] = {}
        for i, p in parties.items():
            out = p.receive(inboxes[i])
            if out is not None:
                nxt[i] = out
        if nxt and len(nxt) != len(parties):
            raise AssertionError("parties finished in different rounds")
        outputs = nxt
