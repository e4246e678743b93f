"""Regenerate the ``4b7440a_*.sql`` fixtures: the three stores exactly as commit 4b7440a made them.

Run with that commit's code on the path (not this checkout's), from the repository root::

    mkdir /tmp/old && git archive 4b7440a | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old .venv/bin/python tests/stores/legacy/make_4b7440a.py tests/stores/legacy

Each store is created and filled through that version's own API, then dumped as SQL text
(``iterdump``: its tables, indexes, triggers and rows; ``PRAGMA user_version`` was 0 then).
The tests load a dump into a fresh file and open it with today's code. Test keys and
passphrases only.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.db import ApprovalRecord, CoordinatorDb, KeyRecord, ProposalRecord, SignRequestRecord
from governance.audit import AuditLog  # type: ignore[attr-defined]  # at 4b7440a the store lived here
from mpc_node.storage import NodeStore, ServedRequest

KEY = bytes([7]) * 32
T0 = 1_700_000_000_000


def ident(n: int) -> bytes:
    return bytes([n]) * 32


def make(out: Path) -> None:
    s = NodeStore.open(out / "node.db", b"legacy passphrase", 1, scrypt_n=2**10)
    s.put_key_share(KEY, b"legacy key share record", label="treasury", public_key=b"\x02" * 33, threshold=2, parties=3)
    s.activate_key(KEY)
    s.put_presignature(ident(1), KEY, b"fresh presignature")
    s.put_presignature(ident(2), KEY, b"used presignature")
    s.consume_presignature(ident(2), b"tombstone", request=ServedRequest("req-1", KEY, ident(9), T0))
    s.add_ban(KEY, 3, "OT-extension check failed")
    s.put_policy_change(b"default", 1, b"change-1", previous_version=None)
    s.close()

    clock = iter(range(T0, T0 + 100_000, 1000))
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    log = AuditLog.open(out / "audit.db", component="node-1", signing_key=key, clock=lambda: next(clock))
    log.append("node-1", "node-start")
    log.append("node-1", "sign", request_id="req-1", outcome="ok", details={"key": KEY.hex()})
    log.close()

    db = CoordinatorDb(out / "coordinator.db")
    db.add_key(KeyRecord(KEY, "treasury", b"\x02" * 33, b"\x00" * 32, 2, 3, "active", T0, "keygen-1"))
    db.create_request("keygen-1", "keygen", label="treasury")
    db.update_request("keygen-1", state="succeeded", signers=(1, 2, 3))
    db.add_sign_request(
        SignRequestRecord("req-1", KEY, ident(9), "alice", b"canonical request", b"default", "pending_approval",
                          T0, T0 + 600_000, None, (), 0, "", 0, T0),
        rate_limit=None,
    )
    db.add_approval("req-1", ApprovalRecord("bob", "approve", b"s" * 64, T0 + 1000))  # type: ignore[attr-defined]
    db.add_policy_change(b"default", 1, b"change-1")
    db.put_proposal(ProposalRecord("prop-1", b"default", b"change-2", "pending", "carol", T0 + 2000, T0 + 2000))
    db.close()


def main(target: Path) -> None:
    with tempfile.TemporaryDirectory() as d:
        make(Path(d))
        for name in ("node", "audit", "coordinator"):
            conn = sqlite3.connect(Path(d) / f"{name}.db")
            try:
                assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
                dump = "\n".join(conn.iterdump())
            finally:
                conn.close()
            header = f"-- the {name} store as commit 4b7440a made it; regenerate with make_4b7440a.py\n"
            (target / f"4b7440a_{name}.sql").write_text(header + dump + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
