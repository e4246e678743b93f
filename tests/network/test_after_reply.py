"""mpc_node.presign.after_reply: with a gRPC context the work is registered to run after the RPC
ends (not now); without one, or when the RPC already ended, it runs at once."""

from __future__ import annotations

from collections.abc import Callable

from mpc_node.presign import after_reply


class _Ctx:
    def __init__(self, active: bool) -> None:
        self.active = active
        self.callbacks: list[Callable[[], object]] = []

    def add_callback(self, fn: Callable[[], object]) -> bool:
        if not self.active:
            return False
        self.callbacks.append(fn)
        return True


def test_deferred_until_the_rpc_ends() -> None:
    ran: list[int] = []
    ctx = _Ctx(active=True)
    after_reply(ctx, lambda: ran.append(1))
    assert ran == [] and len(ctx.callbacks) == 1
    ctx.callbacks[0]()
    assert ran == [1]


def test_at_once_without_a_context_or_after_the_end() -> None:
    ran: list[int] = []
    after_reply(None, lambda: ran.append(1))
    after_reply(_Ctx(active=False), lambda: ran.append(2))
    after_reply(object(), lambda: ran.append(3))  # a test double without add_callback
    assert ran == [1, 2, 3]
