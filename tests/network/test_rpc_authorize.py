"""mpcnet.common.rpc.audited_role_check: the answers are unchanged (allowed, wrong role, no
certificate, revoked certificate, each denial audited and reported) and the call's certificate is
read once per check (``auth_context()`` builds a fresh dict per call)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mpcnet.common.pki import create_ca, issue_cert
from mpcnet.common.rpc import RpcError, audited_role_check, caller_cert_fingerprint, caller_identity, require_role


class _Ctx:
    """The two ServicerContext methods the check reads, counting auth_context() calls."""

    def __init__(self, pem: bytes | None) -> None:
        self.pem = pem
        self.auth_calls = 0

    def peer_identity_key(self) -> str | None:
        return None if self.pem is None else "x509_common_name"

    def auth_context(self) -> dict[str, list[bytes]]:
        self.auth_calls += 1
        return {} if self.pem is None else {"x509_pem_cert": [self.pem]}


class _Audit:
    def __init__(self) -> None:
        self.entries: list[tuple[str, str, str, dict[str, Any]]] = []

    def append(self, actor: str, action: str, *, outcome: str, details: dict[str, Any]) -> None:
        self.entries.append((actor, action, outcome, details))


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    d: Path = tmp_path_factory.mktemp("pki")
    ca = create_ca(d)
    return issue_cert(ca, d, "approver1", role="approver").cert.read_bytes()


def _fp(pem: bytes) -> bytes:
    return hashlib.sha256(x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)).digest()


def _check(refused: frozenset[bytes] = frozenset()) -> tuple[Any, _Audit, list[tuple[str | None, str]]]:
    audit = _Audit()
    denied: list[tuple[str | None, str]] = []
    check = audited_role_check(
        "mpc.v1.Coordinator", lambda m: ("approver",) if m == "Decide" else ("admin", "auditor"), audit,
        refused=lambda: refused, on_denied=lambda role, m: denied.append((role, m)),
    )
    return check, audit, denied


def test_an_allowed_call_reads_the_certificate_once(pem: bytes) -> None:
    check, audit, denied = _check()
    ctx = _Ctx(pem)
    check(ctx, "Decide")
    assert ctx.auth_calls == 1
    assert audit.entries == [] and denied == []


def test_a_wrong_role_is_denied_audited_and_reported(pem: bytes) -> None:
    check, audit, denied = _check()
    ctx = _Ctx(pem)
    with pytest.raises(RpcError) as e:
        check(ctx, "GetAuditLog")
    assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert e.value.message == (
        "mpc.v1.Coordinator/GetAuditLog: certificate 'approver1' has role 'approver'; needs role admin or auditor"
    )
    assert e.value.metadata == (("mpc-needed-role", "admin,auditor"),)
    assert audit.entries == [
        ("approver1", "rpc-denied", "denied", {"method": "GetAuditLog", "role": "approver", "needed": "admin,auditor"})
    ]
    assert denied == [("approver", "GetAuditLog")]
    assert ctx.auth_calls == 1


def test_no_certificate_is_unauthenticated_and_not_audited() -> None:
    check, audit, denied = _check()
    with pytest.raises(RpcError) as e:
        check(_Ctx(None), "Decide")
    assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert e.value.message == "mpc.v1.Coordinator/Decide: a client certificate is required"
    assert audit.entries == [] and denied == [(None, "Decide")]


def test_a_revoked_certificate_is_denied_whatever_its_role(pem: bytes) -> None:
    fp = _fp(pem)
    check, audit, denied = _check(frozenset({fp}))
    ctx = _Ctx(pem)
    with pytest.raises(RpcError) as e:
        check(ctx, "Decide")
    assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert e.value.message == (
        f"mpc.v1.Coordinator/Decide: certificate 'approver1' (sha256 {fp.hex()[:16]}...) is revoked or was rotated away"
    )
    assert audit.entries == [
        ("approver1", "rpc-denied", "denied", {"method": "Decide", "reason": "revoked certificate", "fingerprint": fp.hex()})
    ]
    assert denied == [("approver", "Decide")]
    assert ctx.auth_calls == 1


def test_the_single_call_helpers_answer_as_before(pem: bytes) -> None:
    ctx: Any = _Ctx(pem)
    ident = caller_identity(ctx)
    assert ident is not None and (ident.name, ident.role) == ("approver1", "approver")
    assert caller_cert_fingerprint(ctx) == _fp(pem)
    assert require_role(ctx, ("approver",), "svc") == ident
    none: Any = _Ctx(None)
    assert caller_identity(none) is None and caller_cert_fingerprint(none) is None
