"""The round-based, sans-IO interface shared by every protocol state machine.

A party's step returns one :class:`RoundOutput`: at most one broadcast part (the same bytes for
every other participant) and direct parts addressed to single peers (the transport must keep
them confidential). The next step takes an inbox ``{sender: Delivery}`` holding exactly one
delivery per other participant, keyed by the sender the *transport authenticated*: a payload
whose header claims another sender is attributed to the channel it arrived on.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NoReturn, SupportsIndex, TypeVar

from .codec import BROADCAST, Header, Reader, read_header
from .errors import DecodeError, ProtocolAbort, UsageError


@dataclass(frozen=True)
class RoundOutput:
    round: int
    broadcast: bytes | None = None
    direct: Mapping[int, bytes] = field(default_factory=dict)

    def payload_size(self, n_receivers: int) -> int:
        """Bytes delivered by this output: the broadcast once per receiver, plus direct parts."""
        b = len(self.broadcast) * n_receivers if self.broadcast is not None else 0
        return b + sum(len(v) for v in self.direct.values())


@dataclass(frozen=True)
class Delivery:
    broadcast: bytes | None = None
    direct: bytes | None = None


def check_participants(participants: Sequence[int], me: int, n_max: int = 65535) -> tuple[int, ...]:
    """Distinct, non-zero, in-range indices that include ``me``; returns them sorted."""
    ps = tuple(participants)
    if len(set(ps)) != len(ps):
        raise UsageError("participants: duplicate party index")
    for p in ps:
        if not isinstance(p, int) or not 1 <= p <= n_max:
            raise UsageError(f"participants: index {p!r} out of range 1..{n_max}")
    if me not in ps:
        raise UsageError(f"participants: own index {me} missing")
    return tuple(sorted(ps))


def check_inbox(
    inbox: Mapping[int, Delivery],
    peers: Sequence[int],
    *,
    want_broadcast: bool,
    want_direct: bool,
    round: int,
) -> None:
    """Exactly one delivery per expected peer, with exactly the expected parts."""
    for sender in inbox:
        if sender not in peers:
            raise ProtocolAbort(sender, f"round {round}: message from a party outside the session")
    for p in peers:
        d = inbox.get(p)
        if d is None:
            raise ProtocolAbort(p, f"round {round}: no message received")
        if want_broadcast != (d.broadcast is not None):
            raise ProtocolAbort(p, f"round {round}: broadcast part {'missing' if want_broadcast else 'unexpected'}")
        if want_direct != (d.direct is not None):
            raise ProtocolAbort(p, f"round {round}: direct part {'missing' if want_direct else 'unexpected'}")


def check_echoes(
    round: int, me: int, parties: Iterable[int], echoes: Mapping[int, Sequence[bytes]], mine: Mapping[int, bytes]
) -> None:
    """Every sender's digests of the previous round's broadcasts (one per party, ascending)
    must equal ours (constant-time compare).

    On a mismatch about party m's broadcast, blame only a party the evidence proves at fault:

    * m itself if m's own report differs from our copy (m contradicts its own message);
    * the echoing party if the message in question is our own (we know what we sent, and the
      transport authenticates it);
    * otherwise nobody (``party=None``): an echoing party j that disagrees with our copy of m's
      message is either lying or was sent another message by m, and we cannot tell which.
    """
    order = list(parties)
    for pos, m in enumerate(order):
        disagree = [j for j in sorted(echoes) if not hmac.compare_digest(echoes[j][pos], mine[m])]
        if not disagree:
            continue
        culprit: int | None
        if m != me and m in disagree:
            culprit, why = m, "equivocation or tampering"
        elif m == me:
            culprit, why = disagree[0], "it misreports our own message"
        else:
            culprit, why = None, f"party {m} equivocated or party {disagree[0]} misreports it; cannot tell which"
        raise ProtocolAbort(culprit, f"round {round}: inconsistent views of party {m}'s round-{round - 1} broadcast ({why})")


T = TypeVar("T")
Handler = Callable[[Mapping[int, Delivery]], "RoundOutput | None"]


def blame_malformed(party: int, round: int, decode: Callable[[], T], part: str | None = None) -> T:
    """Run ``decode`` on a message that arrived on ``party``'s channel in round ``round``.

    Returns what ``decode`` returns; a :class:`DecodeError` becomes a :class:`ProtocolAbort`
    naming ``party`` ("round R: malformed [part ]message: field: reason"): the channel is
    authenticated, so a message that does not parse is its sender's fault.
    """
    try:
        return decode()
    except DecodeError as e:
        what = "message" if part is None else f"{part} message"
        raise ProtocolAbort(party, f"round {round}: malformed {what}: {e}") from None


class NoCopy:
    """Mixin for one-time secret state (a presignature, a protocol state machine): ``copy``,
    ``deepcopy`` and ``pickle`` raise :class:`UsageError`, so the state cannot be duplicated
    in memory and used twice (a second signature share, a round re-run on the same secrets)."""

    __slots__ = ()

    def _refuse_copy(self) -> NoReturn:
        raise UsageError(f"{type(self).__name__}: one-time secret state cannot be copied or pickled")

    def __copy__(self) -> NoReturn:
        self._refuse_copy()

    def __deepcopy__(self, memo: object) -> NoReturn:
        self._refuse_copy()

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        self._refuse_copy()


class RoundParty(NoCopy):
    """The driver every protocol state machine shares.

    Subclasses set :attr:`PROTOCOL` and :attr:`SECRETS` (attribute names to erase when the party
    dies), implement :meth:`_first` (the round-1 output) and :meth:`_rounds` (the handlers of the
    later inboxes, in order; the last returns ``None``). *Any* exception raised by a step
    (:class:`ProtocolError`, a bug such as ``TypeError``, or a ``BaseException`` such as
    ``KeyboardInterrupt`` or ``MemoryError``) kills the party: it fails closed, its secrets are
    erased, the exception propagates unchanged, and every later call raises :class:`UsageError`.
    A step can therefore never be re-run on the same secrets.
    """

    PROTOCOL: ClassVar[int]
    SECRETS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, session: bytes, index: int) -> None:
        self._session = session
        self._index = index
        self._next = -1  # -1: not started; k: handler k of _rounds() is next
        self._dead = False
        self._finished = False

    def _first(self) -> RoundOutput:
        raise NotImplementedError

    def _rounds(self) -> Sequence[Handler]:
        raise NotImplementedError

    @property
    def done(self) -> bool:
        return self._finished

    def start(self) -> RoundOutput:
        if self._next != -1 or self._dead:
            raise UsageError("start() already called")
        out = self._guard(self._first)
        self._next = 0
        return out

    def receive(self, inbox: Mapping[int, Delivery]) -> RoundOutput | None:
        if self._dead:
            raise UsageError("receive(): this session already aborted")
        if self._next == -1 or self._finished:
            raise UsageError("receive(): not expecting messages (call start() first; the session may be over)")
        handler = self._rounds()[self._next]
        out = self._guard(lambda: handler(inbox))
        self._next += 1
        if out is None:
            self._finished = True
        return out

    def __repr__(self) -> str:  # never the secrets: only who we are and where we stand
        state = "dead" if self._dead else "done" if self._finished else f"step {self._next + 1}"
        return f"{type(self).__name__}(index={self._index}, session={self._session.hex()[:16]}…, {state})"

    def _guard(self, fn: Callable[[], T]) -> T:
        """Run one step; on any exception whatsoever, die and wipe before re-raising it as is."""
        try:
            return fn()
        except BaseException:
            self._dead = True
            self._wipe()
            raise

    def _wipe(self) -> None:
        """Drop every attribute named in :attr:`SECRETS` (and clear mutable containers first,
        so other references to the same dict or list do not keep the secrets either)."""
        for name in self.SECRETS:
            value = self.__dict__.pop(name, None)
            if isinstance(value, (dict, list)):
                value.clear()

    def _header(self, round: int, kind: int, receiver: int) -> Header:
        return Header(self.PROTOCOL, round, kind, self._session, self._index, receiver)

    def _reader(self, data: bytes, round: int, kind: int, sender: int) -> Reader:
        """A reader positioned after a header that matched exactly what we expect."""
        r = Reader(data)
        read_header(
            r,
            protocol=self.PROTOCOL,
            round=round,
            kind=kind,
            session=self._session,
            sender=sender,
            receiver=0 if kind == BROADCAST else self._index,
        )
        return r
