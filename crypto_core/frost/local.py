"""In-process FROST key generation among all parties (tests and benchmarks only)."""

from __future__ import annotations

from ..local import RunStats, Tamper, run
from ..rng import SYSTEM_RNG, Rng
from .dkg import FrostDkgConfig, FrostDkgParty
from .keyshare import FrostKeyShare


def run_frost_dkg(
    scheme: str,
    t: int,
    n: int,
    rng: Rng = SYSTEM_RNG,
    *,
    session: bytes | None = None,
    key_label: bytes = b"",
    tamper: Tamper | None = None,
    stats: RunStats | None = None,
) -> list[FrostKeyShare]:
    """Run the FROST DKG for ``scheme`` among parties 1..n in this process; returns the n key
    shares in index order. ``rng`` feeds every party (and the session id when none is given);
    raises the first party's :class:`~crypto_core.errors.ProtocolAbort` or UsageError."""
    sid = rng.bytes(32) if session is None else session
    parties = {i: FrostDkgParty(FrostDkgConfig(sid, t, n, i, scheme, key_label), rng) for i in range(1, n + 1)}
    run(parties, tamper, stats)
    out = []
    for i in range(1, n + 1):
        res = parties[i].result
        assert res is not None
        out.append(res)
    return out


__all__ = ["run_frost_dkg"]
