"""Review (issue 14, P1): PresignBatch as an attacker.

Instance messages are bound to their instance and batch (a part moved to another instance, or
carried into another batch, is refused naming the peer that delivered it); the framing is
strict (trailing bytes, a part longer than the message); nothing secret outlives an abort (the
presignatures that instances before the failing one already finished included); no result
before the last round.
"""

from __future__ import annotations

import pytest

from crypto_core.codec import HEADER_LEN, Header, Protocol
from crypto_core.errors import ProtocolAbort, UsageError
from crypto_core.local import run
from crypto_core.rng import DeterministicRng
from crypto_core.sign import BatchConfig, PresignBatch, batch_session

from .sign_util import keygen

SESSION = b"V" * 32
OTHER = b"U" * 32


def _split(payload: bytes) -> tuple[bytes, list[bytes]]:
    """A batch message -> (its 40-byte header, the instance messages)."""
    head, count, pos, parts = payload[:HEADER_LEN], int.from_bytes(payload[HEADER_LEN : HEADER_LEN + 2], "big"), HEADER_LEN + 2, []
    for _ in range(count):
        n = int.from_bytes(payload[pos : pos + 4], "big")
        parts.append(payload[pos + 4 : pos + 4 + n])
        pos += 4 + n
    assert pos == len(payload)
    return head, parts


def _join(head: bytes, parts: list[bytes]) -> bytes:
    return head + len(parts).to_bytes(2, "big") + b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def _parties(count: int = 2, session: bytes = SESSION, seed: bytes = b"r") -> dict[int, PresignBatch]:
    keys = keygen(2, 3)
    return {i: PresignBatch(keys[i], BatchConfig(session, (1, 2), count), DeterministicRng(seed + bytes([i]))) for i in (1, 2)}


def _abort(tamper, count: int = 2) -> ProtocolAbort:  # type: ignore[no-untyped-def]
    ps = _parties(count)
    with pytest.raises(ProtocolAbort) as e:
        run(ps, tamper)
    dead = [p for p in ps.values() if p._dead]  # the receiver of the bad message
    assert dead and all(p.results is None and "_parties" not in p.__dict__ for p in dead)
    return e.value


@pytest.mark.parametrize("rnd,part", [(1, "broadcast"), (2, "direct"), (3, "broadcast"), (3, "direct")])
def test_instance_messages_swapped_between_instances_are_refused(rnd, part):
    def tamper(r: int, sender: int, receiver: int, p: str, payload: bytes) -> bytes:
        if (r, p, sender) == (rnd, part, 2):
            head, parts = _split(payload)
            return _join(head, parts[::-1])
        return payload

    e = _abort(tamper)
    assert e.party == 2 and "header.session" in str(e)


def test_an_instance_message_of_another_batch_is_refused_even_rewrapped():
    """Party 2's round-1 parts of batch OTHER, wrapped in a correct header of batch SESSION."""
    other = _parties(session=OTHER, seed=b"o")
    stolen = _split(other[2].start().broadcast or b"")[1]
    assert batch_session(OTHER, 0) != batch_session(SESSION, 0)

    def tamper(r: int, sender: int, receiver: int, p: str, payload: bytes) -> bytes:
        if (r, p, sender) == (1, "broadcast", 2):
            return _join(payload[:HEADER_LEN], stolen)
        return payload

    e = _abort(tamper)
    assert e.party == 2 and "header.session" in str(e)


def test_a_whole_message_of_another_batch_is_refused():
    other = _parties(session=OTHER, seed=b"p")
    replay = other[2].start().broadcast

    def tamper(r: int, sender: int, receiver: int, p: str, payload: bytes) -> bytes:
        return replay if (r, p, sender) == (1, "broadcast", 2) and replay else payload

    e = _abort(tamper)
    assert e.party == 2 and "header.session" in str(e)


@pytest.mark.parametrize(
    "mangle,field",
    [
        (lambda b: b + b"\0", "trailing"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b[: HEADER_LEN + 2] + (len(b)).to_bytes(4, "big") + b[HEADER_LEN + 6 :], "truncated"),
        (lambda b: b[: HEADER_LEN + 2] + (1 << 25).to_bytes(4, "big") + b[HEADER_LEN + 6 :], "exceeds the maximum"),
    ],
)
def test_batch_framing_is_strict(mangle, field):  # type: ignore[no-untyped-def]
    def tamper(r: int, sender: int, receiver: int, p: str, payload: bytes) -> bytes:
        return mangle(payload) if (r, p, sender) == (2, "direct", 1) else payload

    e = _abort(tamper)
    assert e.party == 1 and field in str(e)


def test_a_batch_header_of_a_single_presign_session_is_refused():
    """The outer header is checked like any message: a batch message under the instance's own
    session id (what a single PresignParty of that session would send) is refused."""

    def tamper(r: int, sender: int, receiver: int, p: str, payload: bytes) -> bytes:
        if (r, p, sender) == (1, "broadcast", 2):
            h = Header(Protocol.SIGN, 1, 0, batch_session(SESSION, 0), 2, 0)
            return h.encode() + payload[HEADER_LEN:]
        return payload

    e = _abort(tamper)
    assert e.party == 2 and "header.session" in str(e)


def test_finished_instances_keep_no_presignature_after_a_later_instance_aborts():
    """Instance 0 finishes round 3 (its Presignature holds phi, u, v), then instance 1 bans the
    peer: the batch is dead, and no instance still holds a presignature with its secret."""
    keys = keygen(2, 3)
    ps = {i: PresignBatch(keys[i], BatchConfig(SESSION, (1, 3), 2), DeterministicRng(b"x" + bytes([i]))) for i in (1, 3)}
    children = list(ps[1]._parties)

    def tamper(r: int, sender: int, receiver: int, p: str, payload: bytes) -> bytes:
        if r == 3 and p == "direct" and sender == 3:
            return payload[:-40] + bytes([payload[-40] ^ 1]) + payload[-39:]  # inside instance 1's message
        return payload

    with pytest.raises(ProtocolAbort) as e:
        run(ps, tamper)
    assert e.value.party == 3
    assert children[0].done  # instance 0 did finish before instance 1 failed
    assert all(c.result is None for c in children), "a finished instance still holds its presignature (phi, u, v)"


def test_no_results_before_the_last_round_and_none_after_a_second_receive():
    ps = _parties(1, seed=b"q")
    outs = {i: p.start() for i, p in ps.items()}
    for _ in range(2):
        from crypto_core.local import route

        inbox = route(outs)
        outs = {i: p.receive(inbox[i]) for i, p in ps.items()}  # type: ignore[misc]
        assert all(p.results is None for p in ps.values())
    inbox = route(outs)
    assert all(p.receive(inbox[i]) is None for i, p in ps.items())
    assert all(p.results is not None and len(p.results) == 1 for p in ps.values())
    with pytest.raises(UsageError):
        ps[1].receive(inbox[1])
