"""Review of issue 14's audit outbox, offline: ``mpc audit verify --db`` / ``export --db`` on a
node's audit.db after the node was killed. The entries of its last state changes may still be
queued in the store next to it (node.db's audit outbox; the node appends them at its next
start): the chain verifies, but the trail is not all there yet, and the tools must say so
rather than present the file as the node's whole trail."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpc_node.storage import NodeStore
from mpcnet.client.cli import main
from mpcnet.common.stores.audit import AuditLog

from .test_audit_outbox import AUDIT_KEY, AUDIT_PUB, _entry, _grant
from .test_storage import N


def _killed_node(d: Path) -> Path:
    store = NodeStore.open(d / "node.db", b"pw", 1, scrypt_n=N)
    audit = AuditLog.open(d / "audit.db", component="node-1", signing_key=AUDIT_KEY)
    audit.append("node-1", "node-start", outcome="ok")
    store.reserve_attempt(_grant("r1"), audit=lambda new: _entry("r1"))
    store.reserve_attempt(_grant("r2"), audit=lambda new: _entry("r2"))
    audit.close()
    store.close()  # killed before the flusher ran
    return d / "audit.db"


def test_offline_verify_and_export_say_that_entries_are_still_queued(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = _killed_node(tmp_path)
    assert main(["audit", "verify", "--db", str(db), "--public-key", AUDIT_PUB.hex()]) == 0  # the chain itself is intact
    err = capsys.readouterr().err
    assert "2 audit entries" in err and "node.db" in err and "queued" in err, err
    assert main(["audit", "export", "--jsonl", "--db", str(db)]) == 0
    cap = capsys.readouterr()
    assert len(cap.out.splitlines()) == 1
    assert "2 audit entries" in cap.err and "queued" in cap.err, cap.err


def test_no_note_without_a_store_or_with_an_empty_outbox(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audit = AuditLog.open(tmp_path / "audit.db", component="coordinator", signing_key=AUDIT_KEY)
    audit.append("coordinator", "start", outcome="ok")
    audit.close()
    assert main(["audit", "verify", "--db", str(tmp_path / "audit.db"), "--public-key", AUDIT_PUB.hex()]) == 0
    assert "queued" not in capsys.readouterr().err
    NodeStore.open(tmp_path / "node.db", b"pw", 1, scrypt_n=N).close()
    assert main(["audit", "verify", "--db", str(tmp_path / "audit.db"), "--public-key", AUDIT_PUB.hex()]) == 0
    assert "queued" not in capsys.readouterr().err
