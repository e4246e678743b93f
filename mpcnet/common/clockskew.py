"""Measuring a node's clock against the coordinator's (used by the coordinator's health probe;
:func:`format_skew` also by the client and ``mpc status``).

A node puts its wall clock (``unix_ms``) in every ``Health`` and ``GetInfo`` answer. The
coordinator reads its own wall clock just before sending the call and just after the answer
arrives; the node read its clock somewhere in between, so

    skew  = node clock - (sent + received) / 2
    error = (received - sent) / 2          (the measurement is within skew +- error)

A node is *beyond* the tolerance only when even the most favourable reading within the error
bound is: ``|skew| - error > max_skew``, so a slow round trip never condemns a node.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SkewSample:
    """One measurement: ``skew_ms`` (node minus coordinator, ms; positive = node ahead) and
    ``error_ms`` (>= 0, half the round trip)."""

    skew_ms: int
    error_ms: int

    def beyond(self, max_skew_ms: int) -> bool:
        """True iff the node's clock is off by more than ``max_skew_ms`` even at the error bound."""
        return abs(self.skew_ms) - self.error_ms > max_skew_ms

    def text(self) -> str:
        """``skew +90.2s (+-0.003s)``: for messages, logs and the audit."""
        return f"skew {format_skew(self.skew_ms)} (+-{self.error_ms / 1000:.3f}s)"


def measure(sent_ms: int, received_ms: int, node_ms: int) -> SkewSample:
    """The skew of a node that answered ``node_ms`` to a call sent at ``sent_ms`` and answered
    at ``received_ms`` (all Unix milliseconds). ValueError if ``received_ms < sent_ms`` (the
    coordinator's clock stepped back during the call: no measurement)."""
    if received_ms < sent_ms:
        raise ValueError("received_ms: earlier than sent_ms (the local clock stepped back)")
    rtt = received_ms - sent_ms
    skew2 = 2 * node_ms - sent_ms - received_ms  # twice the skew, exact
    # the skew rounded toward zero (at most 0.5 ms off), the error bound rounded up plus that 0.5 ms
    return SkewSample(skew2 // 2 if skew2 >= 0 else -((-skew2) // 2), rtt // 2 + 1)


def format_skew(skew_ms: int) -> str:
    """``+90.2s``, ``-360.0s``, ``+0.0s``."""
    tenths = round(skew_ms / 100)
    return f"{'-' if tenths < 0 else '+'}{abs(tenths) / 10:.1f}s"
