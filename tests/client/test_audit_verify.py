"""``mpc audit verify``'s cross-check of the nodes' released shares against the coordinator's log
(p16 attack round, item 2), over real signed logs and a fake coordinator relay.

Finding: a node's ``sign-share`` / ``released`` entry was matched to the coordinator's
``sign-request`` entry by request id only, so a compromised coordinator could record another
request under the id a node released a share for. Now the ``request_sha256`` both record must
match too. And the gap messages printed request ids (which the coordinator hands out) unquoted:
a hostile id with control characters or ANSI escapes now reaches the report quoted, the terminal
escaped."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mpcnet.client import cli
from mpcnet.client.audit import completeness_gaps, verify_cluster
from mpcnet.common.stores.audit import AuditLog

SHA_A = hashlib.sha256(b"request A").hexdigest()
SHA_B = hashlib.sha256(b"request B").hexdigest()
HOSTILE = "q9\x1b[2J\x1b]0;owned\x07\r\nnode-1 ok"


@dataclass
class Logs:
    coordinator: AuditLog
    node: AuditLog

    def rows(self) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        return self.coordinator.raw_rows(), self.node.raw_rows()


@pytest.fixture
def logs(tmp_path: Path) -> Any:
    keys = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    with AuditLog.open(tmp_path / "coordinator.db", component="coordinator", signing_key=keys[0]) as c, \
            AuditLog.open(tmp_path / "node-1.db", component="node-1", signing_key=keys[1]) as n:
        yield Logs(c, n)


def submitted(log: AuditLog, rid: str, sha: str | None) -> None:
    details: dict[str, str | int | bool] = {"key_id": "00" * 32} | ({} if sha is None else {"request_sha256": sha})
    log.append("requester1", "sign-request", request_id=rid, outcome="pending", details=details)


def released(log: AuditLog, rid: str, sha: str | None) -> None:
    details: dict[str, str | int | bool] = {"attempt": 1} | ({} if sha is None else {"request_sha256": sha})
    log.append("requester1", "sign-share", request_id=rid, outcome="released", details=details)


def test_a_released_share_of_the_same_request_is_complete(logs: Logs) -> None:
    submitted(logs.coordinator, "q1", SHA_A)
    released(logs.node, "q1", SHA_A)
    coord, node = logs.rows()
    assert completeness_gaps(coord, {"node-1": node}, []) == []


def test_a_released_share_of_another_request_under_the_same_id_is_a_gap(logs: Logs) -> None:
    submitted(logs.coordinator, "q1", SHA_B)  # what a compromised coordinator presents under the id
    released(logs.node, "q1", SHA_A)
    coord, node = logs.rows()
    (gap,) = completeness_gaps(coord, {"node-1": node}, [])
    assert (gap.component, gap.seq, gap.request_id) == ("node-1", 1, "q1")
    assert f"request_sha256 {SHA_A[:16]}..." in gap.reason and f"records request_sha256 {SHA_B[:16]}..." in gap.reason
    assert "another request under the same id" in gap.reason


def test_a_coordinator_entry_without_the_hash_the_node_recorded_is_a_gap(logs: Logs) -> None:
    submitted(logs.coordinator, "q1", None)
    released(logs.node, "q1", SHA_A)
    coord, node = logs.rows()
    (gap,) = completeness_gaps(coord, {"node-1": node}, [])
    assert gap.component == "node-1" and "records no request_sha256" in gap.reason


def test_an_older_nodes_entry_without_the_hash_is_matched_by_id(logs: Logs) -> None:
    submitted(logs.coordinator, "q1", SHA_A)
    released(logs.node, "q1", None)
    coord, node = logs.rows()
    assert completeness_gaps(coord, {"node-1": node}, []) == []


def test_two_sign_request_entries_of_one_id_naming_different_requests_are_a_gap(logs: Logs) -> None:
    submitted(logs.coordinator, "q1", SHA_A)
    submitted(logs.coordinator, "q1", SHA_B)
    released(logs.node, "q1", SHA_A)
    coord, node = logs.rows()
    (gap,) = completeness_gaps(coord, {"node-1": node}, [])
    assert (gap.component, gap.seq) == ("coordinator", 2) and "second sign-request entry" in gap.reason


class Copy:
    def __init__(self, rows: list[tuple[object, ...]]) -> None:
        self._rows = rows

    def rows(self) -> list[tuple[object, ...]]:
        return self._rows


@dataclass
class Listed:
    request_id: str


class Relay:
    """The coordinator's relay as the client sees it: the logs, and a DONE list it makes up."""

    def __init__(self, logs: Logs, done: list[str]) -> None:
        self.logs, self.done = logs, done

    def fetch_audit(self, component: str) -> Copy:
        return Copy((self.logs.coordinator if component == "coordinator" else self.logs.node).raw_rows())

    def list_sign_requests(self, *, state: str | None = None, limit: int = 0) -> list[Listed]:
        return [Listed(r) for r in self.done]

    def close(self) -> None:
        pass

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def info(logs: Logs) -> dict[str, Any]:
    return {"audit": {
        "coordinator": {"public_key": logs.coordinator.public_key.hex()}, "node-1": {"public_key": logs.node.public_key.hex()},
    }}


def test_a_hostile_request_id_reaches_the_report_quoted(logs: Logs) -> None:
    submitted(logs.coordinator, "q1", SHA_A)
    released(logs.node, "q1", SHA_A)
    reports = verify_cluster(Relay(logs, [HOSTILE]), info(logs), None)  # type: ignore[arg-type]
    by = {r.component: r for r in reports}
    assert by["node-1"].ok and not by["coordinator"].ok
    reason = by["coordinator"].reason
    assert reason.startswith(f"request {HOSTILE!a} is DONE but the log has no sign-request"), reason
    assert reason.isprintable() and reason.isascii() and "\x1b" not in reason and "\n" not in reason


def test_mpc_audit_verify_prints_a_hostile_request_id_escaped(logs: Logs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    submitted(logs.coordinator, "q1", SHA_B)
    released(logs.node, "q1", SHA_A)
    cluster = tmp_path / "cluster"
    (cluster / "identities" / "auditor1").mkdir(parents=True)
    (cluster / "cluster.json").write_text(json.dumps(info(logs)))
    monkeypatch.setattr(cli, "_client", lambda ap, opts: Relay(logs, [HOSTILE]))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["--cluster", str(cluster), "--as", "auditor1", "audit", "verify"])
    text = out.getvalue()
    assert code == 1 and "Traceback" not in err.getvalue(), err.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text, text
    lines = text.splitlines()
    assert len(lines) == 3, lines  # one per component and the verdict: the id's newline did not add a line
    assert any(x.startswith("coordinator ") and "BROKEN" in x and "'q9\\x1b[2J" in x for x in lines), lines
    assert any(x.startswith("node-1 ") and "BROKEN" in x and "another request under the same id" in x for x in lines), lines
    assert lines[-1] == "audit trail NOT verified (see above)"


def _finished(log: AuditLog, rid: str, approved: str | None, done: str | None) -> None:
    for action, outcome, sha in (("sign-approved", "signing", approved), ("sign-done", "done", done)):
        details: dict[str, str | int | bool] = {"key_id": "00" * 32} | ({} if sha is None else {"request_sha256": sha})
        log.append("coordinator", action, request_id=rid, outcome=outcome, details=details)


def test_a_sign_done_entry_naming_another_request_than_the_ids_sign_request_is_a_gap(logs: Logs) -> None:
    """The DONE check tied sign-request, sign-approved and sign-done by request id only: a
    coordinator could record the signature of another request (another request_sha256) as the
    end of the id the nodes signed for."""
    submitted(logs.coordinator, "q1", SHA_A)
    _finished(logs.coordinator, "q1", SHA_A, SHA_B)
    released(logs.node, "q1", SHA_A)
    coord, node = logs.rows()
    (gap,) = completeness_gaps(coord, {"node-1": node}, ["q1"])
    assert (gap.component, gap.seq, gap.request_id) == ("coordinator", 3, "q1")
    assert "sign-done entry names another request" in gap.reason and SHA_B[:16] in gap.reason and SHA_A[:16] in gap.reason


def test_the_ids_entries_naming_its_request_or_no_hash_are_complete(logs: Logs) -> None:
    submitted(logs.coordinator, "q1", SHA_A)
    _finished(logs.coordinator, "q1", SHA_A, SHA_A)
    submitted(logs.coordinator, "q2", SHA_B)
    _finished(logs.coordinator, "q2", None, None)  # an entry written when the request could not be read: tied by id
    coord, node = logs.rows()
    assert completeness_gaps(coord, {"node-1": node}, ["q1", "q2"]) == []
