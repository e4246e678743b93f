"""A settable steady clock for node and coordinator stores in tests (mpcnet/common/steadyclock.py)."""

from __future__ import annotations

from mpcnet.common.steadyclock import SteadySource


class FakeSteady:
    """``ms``: the raw boot-time clock and (for a brand-new timeline) the wall clock, in ms; a
    store opened with :meth:`source` on a fresh file then reads exactly ``ms`` as steady time."""

    def __init__(self, ms: int, boot: str = "boot-1") -> None:
        self.ms = ms
        self.boot = boot

    def source(self) -> SteadySource:
        return SteadySource(lambda: self.ms * 1_000_000, lambda: self.boot, lambda: self.ms * 1_000_000)
