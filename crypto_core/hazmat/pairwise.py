"""Long-lived pairwise material produced by the DKG (notes section 3.4).

For every ordered pair (B, A) there is one OT-extension instance: B, the extension receiver
(Bob in the RVOLE, holding the random scalar chi), is the base-OT sender and keeps both seeds of
every base OT; A, the extension sender (Alice, holding the vector input), is the base-OT receiver
and keeps its choice bits Delta and the chosen seeds. Party i stores, per peer j, its Bob-side
seeds toward Alice j, its Alice-side seeds toward Bob j, and the zero-share seed it shares with j.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..codec import Reader, Writer
from ..errors import DecodeError
from ..params import SUPPORTED_LAMBDA
from .base_ot import KEY_LEN


@dataclass(frozen=True)
class OteReceiverSeeds:
    """Bob's side: ``(K_{k,0}, K_{k,1})`` for ``k < lambda_c``."""

    seeds0: tuple[bytes, ...]
    seeds1: tuple[bytes, ...]

    def __repr__(self) -> str:  # both seeds of every base OT are secret
        return f"OteReceiverSeeds(lambda_c={len(self.seeds0)}, <secret>)"

    def __post_init__(self) -> None:
        if len(self.seeds0) not in SUPPORTED_LAMBDA or len(self.seeds1) != len(self.seeds0):
            raise ValueError("OteReceiverSeeds: wrong number of seeds")

    @property
    def lambda_c(self) -> int:
        return len(self.seeds0)

    def write(self, w: Writer) -> None:
        w.raw(b"".join(self.seeds0)).raw(b"".join(self.seeds1))

    @staticmethod
    def read(r: Reader, field: str, lambda_c: int) -> OteReceiverSeeds:
        s0 = r.take(KEY_LEN * lambda_c, field + ".seeds0")
        s1 = r.take(KEY_LEN * lambda_c, field + ".seeds1")
        return OteReceiverSeeds(_split(s0), _split(s1))


@dataclass(frozen=True)
class OteSenderSeeds:
    """Alice's side: ``Delta`` (lambda_c bits, bit k at ``(delta[k>>3] >> (k&7)) & 1``) and
    ``K_{k, Delta_k}``."""

    delta: bytes
    seeds: tuple[bytes, ...]

    def __repr__(self) -> str:  # Delta and the chosen seeds are secret
        return f"OteSenderSeeds(lambda_c={len(self.seeds)}, <secret>)"

    def __post_init__(self) -> None:
        if len(self.seeds) not in SUPPORTED_LAMBDA or len(self.delta) != len(self.seeds) // 8:
            raise ValueError("OteSenderSeeds: wrong sizes")

    @property
    def lambda_c(self) -> int:
        return len(self.seeds)

    def delta_bit(self, k: int) -> int:
        return (self.delta[k >> 3] >> (k & 7)) & 1

    def write(self, w: Writer) -> None:
        w.raw(self.delta).raw(b"".join(self.seeds))

    @staticmethod
    def read(r: Reader, field: str, lambda_c: int) -> OteSenderSeeds:
        delta = r.take(lambda_c // 8, field + ".delta")
        s = r.take(KEY_LEN * lambda_c, field + ".seeds")
        return OteSenderSeeds(delta, _split(s))


@dataclass(frozen=True)
class PairwiseSetup:
    """What party i keeps toward one peer j."""

    peer: int
    as_bob: OteReceiverSeeds  # i = extension receiver (Bob) toward Alice j
    as_alice: OteSenderSeeds  # i = extension sender (Alice) toward Bob j
    zero_seed: bytes  # 32 bytes shared with j only

    def __repr__(self) -> str:  # every field but the peer is secret
        return f"PairwiseSetup(peer={self.peer}, <secret>)"

    def write(self, w: Writer) -> None:
        w.u16(self.peer)
        self.as_bob.write(w)
        self.as_alice.write(w)
        w.raw(self.zero_seed)

    @staticmethod
    def read(r: Reader, field: str, lambda_c: int) -> PairwiseSetup:
        peer = r.u16(field + ".peer")
        return PairwiseSetup(
            peer,
            OteReceiverSeeds.read(r, field + ".as_bob", lambda_c),
            OteSenderSeeds.read(r, field + ".as_alice", lambda_c),
            r.take(32, field + ".zero_seed"),
        )


def _split(b: bytes) -> tuple[bytes, ...]:
    if len(b) % KEY_LEN:
        raise DecodeError("seeds", "length not a multiple of the key size")
    return tuple(b[i:i + KEY_LEN] for i in range(0, len(b), KEY_LEN))
