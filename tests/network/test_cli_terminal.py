"""The ``mpc`` CLI prints server text (from an untrusted coordinator, or relayed from a node)
with every non-printable character escaped: no terminal escape sequence from a server reaches
the user's terminal, so a compromised coordinator cannot, e.g., move the cursor up and overwrite
the digest that ``mpc request show`` displayed before the approver decides."""

from __future__ import annotations

import os
import time
from typing import Any

import grpc
import pytest

from governance.approval import SigningRequest
from mpcnet.client import ApprovalView, MpcError, SignRequest, cli

ESC = "\x1b[3A\r\x1b[2Kdigest       " + "ab" * 32 + "\x1b]52;c;Zm9v\x07\u202e"


def _request() -> SignRequest:
    now = time.time_ns() // 1_000_000
    req = SigningRequest("r-1", os.urandom(32), bytes(32), (), "requester1", "pay invoice 42", now, now + 60_000, 1, bytes(32))
    return SignRequest(
        request_id="r-1", state="failed", request=req, request_bytes=req.encode(),
        approvals=(ApprovalView("approver1" + ESC, "approve", now),), approval_quorum=2, approvers=3, signature=None,
        error_code="ABORTED", error_message="sign aborted: " + ESC, attempts=1, updated_unix_ms=now,
    )


class _Key:
    def describe(self, path: Any = None) -> dict[str, Any]:
        return {"key_id": "00" * 32, "status": "active", "threshold": 2, "parties": 3, "ethereum_address": "0x0", "label": "k" + ESC}


class _Fake:
    def __enter__(self) -> _Fake:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def get_sign_request(self, rid: str) -> SignRequest:
        return _request()

    def list_keys(self) -> list[_Key]:
        return [_Key()]

    def watch_sign_request(self, rid: str, *, timeout: float | None = None, on_retry: object = None) -> list[SignRequest]:
        return [_request()]

    def cluster_status(self) -> Any:
        raise MpcError(grpc.StatusCode.UNAVAILABLE, "coordinator says " + ESC)


@pytest.mark.parametrize(
    "argv",
    [["request", "show", "r-1"], ["keys"], ["request", "watch", "r-1"], ["status"]],
)
def test_server_text_reaches_the_terminal_escaped(argv, monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli, "_client", lambda ap, args: _Fake())
    cli.main(["--cluster", "unused", "--as", "approver1", *argv])
    out, err = capsys.readouterr()
    for text in (out, err):
        assert not any(not c.isprintable() and c != "\n" for c in text), repr(text)
    assert "\\x1b[3A" in out + err  # shown, escaped


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d.pop("coordinator"), "coordinator: missing"),
        (lambda d: d["coordinator"].update(endpoint="localhost:1\x1b[2J"), "coordinator.endpoint: must be HOST:PORT"),
        (lambda d: d.update(ca_cert=7), "ca_cert: must be a string"),
    ],
)
def test_a_damaged_cluster_json_is_a_usage_error_naming_the_field(tmp_path, capsys, change, message) -> None:
    """cluster.json is file text: a missing coordinator was reported as '--as: coordinator', a
    hostile endpoint reached grpc (exit 3, UNAVAILABLE); now exit 2 naming the field."""
    import json

    doc = {"coordinator": {"endpoint": "localhost:1"}, "ca_cert": str(tmp_path / "ca.pem"), "identities": {"auditor1": {}}}
    change(doc)
    (tmp_path / "cluster.json").write_text(json.dumps(doc))
    code = cli.main(["--cluster", str(tmp_path), "--as", "auditor1", "keys"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "--as" not in err.split("(see")[0] and len(err.splitlines()) == 1, err
    assert "\x1b" not in err


def test_stacked_combining_marks_in_user_text_are_escaped_past_a_few(monkeypatch, capsys) -> None:
    """A description (or label) of hundreds of combining marks on one character ("Zalgo") draws
    over the rows above and below it in many terminals, e.g. over the digest an approver checks:
    a view keeps at most MAX_COMBINING_RUN marks in a row and escapes the rest. Ordinary accented
    text (a few marks per letter) is unchanged."""
    import unicodedata

    from governance.text import MAX_COMBINING_RUN, escape

    zalgo = "pay" + "\u0336\u0301\u0489" * 100 + " invoice"
    accented = unicodedata.normalize("NFD", "Ti\u1ebfng Vi\u1ec7t, r\u00e9sum\u00e9")
    assert escape(accented) == accented
    shown = escape(zalgo)
    assert shown.startswith("pay\u0336\u0301\u0489") and "\\u0336" in shown and shown.endswith(" invoice")

    def longest_run(text: str) -> int:
        run = best = 0
        for c in text:
            run = run + 1 if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me") else 0
            best = max(best, run)
        return best

    assert longest_run(shown) <= MAX_COMBINING_RUN
    now = time.time_ns() // 1_000_000
    req = SigningRequest("r-1", os.urandom(32), bytes(32), (), "requester1", zalgo, now, now + 60_000, 1, bytes(32))
    r = SignRequest(
        request_id="r-1", state="pending_approval", request=req, request_bytes=req.encode(), approvals=(),
        approval_quorum=2, approvers=3, signature=None, error_code="", error_message="", attempts=0, updated_unix_ms=now,
    )

    class Fake(_Fake):
        def get_sign_request(self, rid: str) -> SignRequest:
            return r

    monkeypatch.setattr(cli, "_client", lambda ap, args: Fake())
    cli.main(["--cluster", "unused", "--as", "approver1", "request", "show", "r-1"])
    out, _ = capsys.readouterr()
    assert longest_run(out) <= MAX_COMBINING_RUN and "description" in out
