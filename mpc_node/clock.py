"""The node's wall clock, with a test-mode-only offset.

Every wall-clock read of the node (governance expiry and rate-limit checks, the clock it reports
in ``GetInfo``/``Health``, its audit timestamps) goes through one :class:`NodeClock`. With
``test_mode: true`` in the node config (never otherwise) the environment variable
``MPC_TEST_CLOCK_OFFSET_S`` (a float, seconds, e.g. ``90`` or ``-360``) shifts that clock, so
integration tests can run a node whose clock is off without touching the host's clock.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from dataclasses import dataclass

ENV = "MPC_TEST_CLOCK_OFFSET_S"
_SECONDS_RE = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,9})?")
MAX_TEST_OFFSET_S = 10 * 365 * 86400.0  # anything larger is a typo

log = logging.getLogger("mpc_node.clock")


@dataclass(frozen=True)
class NodeClock:
    """``now_ms()``: milliseconds since the Unix epoch, shifted by ``offset_ms`` (0 outside tests)."""

    offset_ms: int = 0

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    @staticmethod
    def from_env(test_mode: bool) -> NodeClock:
        """The real clock; in test mode shifted by ``MPC_TEST_CLOCK_OFFSET_S`` when it is set.

        Raises ValueError naming the variable when it is set (in test mode) but not a finite
        number of at most :data:`MAX_TEST_OFFSET_S` seconds either way.
        """
        raw = os.environ.get(ENV, "") if test_mode else ""
        if not raw:
            return NodeClock()
        # ASCII digits only: float() would also read "\uff19\uff10" (full-width 90), "9_0" and " 90"
        if _SECONDS_RE.fullmatch(raw) is None:
            raise ValueError(f"{ENV}: must be a number of seconds such as 90, -360 or 90.5 (digits 0-9)")
        offset = float(raw)
        if not math.isfinite(offset) or abs(offset) > MAX_TEST_OFFSET_S:
            raise ValueError(f"{ENV}: must be finite and at most {MAX_TEST_OFFSET_S:.0f} s either way")
        log.warning("TEST MODE: the node's clock is shifted by %+.3f s", offset)
        return NodeClock(round(offset * 1000))
