"""A node's error text (a corrupted node chooses it) reaches the coordinator's log, its stored
request errors and users' terminals only escaped: no control character, so no forged log line
and no terminal escape sequence."""

from __future__ import annotations

import grpc

from coordinator.relay import _classify

FORGED = "refused\n2026-01-01 00:00:00,000 coordinator WARNING coordinator.service: forged\x1b[2J\r"


class _NodeError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, md: tuple = ()) -> None:
        self._code, self._md = code, md

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return FORGED

    def trailing_metadata(self) -> tuple:
        return self._md


class _Handle:
    label = "node 2 (node-2)"

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def mark_down(self, reason: str) -> None:
        self.reasons.append(reason)


def _clean(text: str) -> bool:
    return all(c.isprintable() for c in text) and "forged" in text


def test_node_error_text_is_escaped() -> None:
    h = _Handle()
    for code, md in [
        (grpc.StatusCode.ABORTED, (("mpc-culprit", "2"),)),
        (grpc.StatusCode.PERMISSION_DENIED, (("mpc-governance", "denied"),)),
        (grpc.StatusCode.UNAVAILABLE, ()),
    ]:
        got = _classify({2: h}, {2: _NodeError(code, md)}, "step")  # type: ignore[dict-item]
        assert _clean(str(got)), repr(str(got))
    assert h.reasons and all(_clean(r) for r in h.reasons), h.reasons


def test_a_nodes_ban_claim_names_only_its_co_signers() -> None:
    """``mpc-banned`` is a node's claim (a corrupted node chooses it): only its co-signers in the
    session count; an index outside the session (here 99, which made the honest coordinator's
    signing loop fail the request with INTERNAL on a KeyError) or the node itself is ignored."""
    nodes = {1: _Handle(), 2: _Handle()}
    md = (("mpc-banned", "99,2,1,3,x"),)
    got = _classify(nodes, {1: _NodeError(grpc.StatusCode.PERMISSION_DENIED, md)}, "start")  # type: ignore[arg-type]
    assert got.banned == (2,), got  # type: ignore[attr-defined]


def test_non_ascii_digits_in_a_nodes_metadata_are_ignored() -> None:
    """``str.isdigit`` accepts '²' (which ``int`` refuses: a ValueError out of the signing loop,
    INTERNAL) and other scripts' digits; only ASCII decimal indexes count. Metadata arrives
    UTF-8 decoded, so a corrupted node's own gRPC stack can send them; ``-bin``-less bytes that
    are not UTF-8 must not raise either."""
    nodes = {1: _Handle(), 2: _Handle()}
    for value in ("²", "2²", "\u0661", "\u0662"):  # superscript and Arabic-Indic digits
        got = _classify(nodes, {1: _NodeError(grpc.StatusCode.ABORTED, (("mpc-culprit", value),))}, "step")  # type: ignore[arg-type]
        assert got.culprit is None, (value, got)  # type: ignore[attr-defined]
        got = _classify(nodes, {1: _NodeError(grpc.StatusCode.PERMISSION_DENIED, (("mpc-banned", f"{value},2"),))}, "start")  # type: ignore[arg-type]
        assert got.banned == (2,), (value, got)  # type: ignore[attr-defined]
    got = _classify(nodes, {1: _NodeError(grpc.StatusCode.ABORTED, (("mpc-culprit", b"\xff2"),))}, "step")  # type: ignore[arg-type]
    assert got.culprit is None  # type: ignore[attr-defined]


def test_abort_reason_sent_to_the_nodes_is_one_escaped_line() -> None:
    """The coordinator tells the nodes why it drops a session; the reason quotes node text, and a
    node refuses a reason with control or format characters (governance.text), so it is escaped
    (and cut to the node's 500 characters) before it leaves."""
    from types import SimpleNamespace

    from coordinator.relay import abort_session
    from governance.text import check_text

    sent = []

    def future(req, timeout):
        sent.append(req)
        return SimpleNamespace(result=lambda timeout: None)

    nodes = {i: SimpleNamespace(stub=SimpleNamespace(AbortSession=SimpleNamespace(future=future))) for i in (1, 2)}
    abort_session(nodes, bytes(32), "node 2 (node-2): " + FORGED + "\u202e" + "x" * 600)
    assert len(sent) == 2
    for req in sent:
        assert req.reason.startswith("node 2 (node-2): refused\\n2026-01-01") and "\\x1b[2J\\r\\u202e" in req.reason
        assert check_text(req.reason, "reason", 500) == req.reason
