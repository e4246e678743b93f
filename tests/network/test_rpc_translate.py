"""The RPC layer's last line: an exception a handler did not map is INTERNAL, unless the server's
``translate`` hook names it (a node maps every store or audit-log write failure, in any RPC, to
UNAVAILABLE naming the store: issue 8, a node whose disk is full must never answer INTERNAL)."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import grpc
import pytest

from mpcnet.common.rpc import RpcError, _wrap


class _Aborted(Exception):
    pass


class _Ctx:
    def __init__(self) -> None:
        self.md: Any = None

    def set_trailing_metadata(self, md: Any) -> None:
        self.md = md

    def abort(self, code: grpc.StatusCode, message: str) -> None:
        raise _Aborted(code, message)


def _call(exc: Exception, translate: Any) -> tuple[grpc.StatusCode, str]:
    def fn(request: Any, context: Any) -> Any:
        raise exc

    with pytest.raises(_Aborted) as e:
        _wrap(fn, "CommitKey", "mpc.v1.CommitKeyRequest", None, logging.getLogger("t"), translate)(object(), _Ctx())
    return e.value.args[0], e.value.args[1]


def _store_failure(e: Exception) -> RpcError | None:
    if isinstance(e, (sqlite3.Error, OSError)):
        return RpcError(grpc.StatusCode.UNAVAILABLE, f"store: node-1 cannot use its store ({e})")
    return None


def test_translated_store_failure_is_unavailable() -> None:
    code, msg = _call(sqlite3.OperationalError("database or disk is full"), _store_failure)
    assert code == grpc.StatusCode.UNAVAILABLE and msg.startswith("store: node-1 cannot use its store")


def test_untranslated_exception_is_internal_without_its_text() -> None:
    code, msg = _call(ValueError("secret-looking text"), _store_failure)
    assert code == grpc.StatusCode.INTERNAL and "secret-looking" not in msg
    code, msg = _call(sqlite3.OperationalError("x"), None)
    assert code == grpc.StatusCode.INTERNAL


def test_node_maps_every_storage_error_type() -> None:
    from mpc_node.service import NodeService
    from mpc_node.storage import StoreError

    class _Svc:
        cfg = type("C", (), {"name": "node-1"})()
        probed = 0

        def probe_store(self) -> str:
            self.probed += 1
            return "x"

        _unusable = NodeService._unusable

    svc = _Svc()
    for e in (StoreError("database: disk I/O error"), sqlite3.OperationalError("disk full"), OSError(28, "No space left")):
        err = NodeService.storage_failure(svc, e)  # type: ignore[arg-type]
        assert err is not None and err.code == grpc.StatusCode.UNAVAILABLE and "cannot use its store" in err.message
    assert svc.probed == 3
    assert NodeService.storage_failure(svc, ValueError("bug")) is None  # type: ignore[arg-type]
