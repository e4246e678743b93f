"""Test harness: run parties in process, collect every party's abort, tamper with messages."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from crypto_core.errors import ProtocolAbort
from crypto_core.local import Party, Tamper, route
from crypto_core.session import RoundOutput


@dataclass
class Outcome:
    aborts: dict[int, ProtocolAbort] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)
    transcript: dict[tuple[int, int, int, str], bytes] = field(default_factory=dict)


def run_collect(parties: Mapping[int, Party], tamper: Tamper | None = None) -> Outcome:
    """Run round by round; stop after the first step in which any party aborted.

    Any exception other than ProtocolAbort propagates (an unhandled exception is a bug).
    The transcript records every delivered part by (round, sender, receiver, part).
    """
    out = Outcome()

    def recording(rnd: int, j: int, k: int, part: str, data: bytes) -> bytes:
        data = tamper(rnd, j, k, part, data) if tamper else data
        out.transcript[(rnd, j, k, part)] = data
        return data

    outputs: dict[int, RoundOutput] = {i: p.start() for i, p in parties.items()}
    while outputs:
        inboxes = route(outputs, recording)
        nxt: dict[int, RoundOutput] = {}
        for i, p in parties.items():
            if i not in inboxes:
                continue
            try:
                o = p.receive(inboxes[i])
            except ProtocolAbort as e:
                out.aborts[i] = e
                continue
            if o is None:
                out.finished.add(i)
            else:
                nxt[i] = o
        if out.aborts:
            break
        outputs = nxt
    return out


def flip_bit(pos: int) -> Callable[[bytes], bytes]:
    def f(b: bytes) -> bytes:
        p = pos % (8 * len(b))
        ba = bytearray(b)
        ba[p // 8] ^= 1 << (p % 8)
        return bytes(ba)

    return f
