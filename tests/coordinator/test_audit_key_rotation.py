"""coordinator/audit_key.py: ``mpc-coordinator rotate-audit-key`` hands the coordinator's audit log
over to a new key (an entry signed by the old key names it) and replaces the keystore; a kill
between the steps is finished or undone at the next start."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import coordinator.audit_key as audit_key
from coordinator.audit_key import finish_pending_rotation, rotate_audit_key, staged_path
from governance.audit import KEY_ROTATED_ACTION, check_details, seal_entry, verify_entries
from mpcnet.common.keystore import create_keystore, load_keystore
from mpcnet.common.stores.audit import AuditLog, verify_audit

PASS = b"coordinator passphrase"


def _coordinator(tmp: Path) -> tuple[Any, bytes]:
    (tmp / "data").mkdir()
    (tmp / "passphrase").write_bytes(PASS)
    keys = create_keystore(tmp / "keystore.json", PASS, scrypt_n=2**10)
    cfg = SimpleNamespace(
        name="coordinator", keystore=tmp / "keystore.json", audit_db=tmp / "data" / "audit.db", db=tmp / "data" / "coordinator.db",
        passphrase_file=tmp / "passphrase", passphrase_env=None,
    )
    with AuditLog.open(cfg.audit_db, component="coordinator", signing_key=keys.identity) as log:
        log.append("coordinator", "coordinator-start", outcome="ok")
    return cfg, keys.identity_public


def test_rotation_hands_the_log_over_and_replaces_the_keystore(tmp_path: Path) -> None:
    cfg, first = _coordinator(tmp_path)
    done = rotate_audit_key(cfg)
    assert done.old_public == first and done.seq == 2
    new = load_keystore(cfg.keystore, PASS)
    assert new.identity_public == done.new_public != first
    assert not staged_path(cfg.keystore).exists()
    with AuditLog.open(cfg.audit_db, component="coordinator", signing_key=new.identity) as log:
        log.append("coordinator", "coordinator-start", outcome="ok")
        rows = log.raw_rows()
    assert rows[1][3] == KEY_ROTATED_ACTION
    assert verify_audit(cfg.audit_db, first).ok  # from the key clients hold in cluster.json
    assert verify_entries("coordinator", first, rows).ok
    # an entry the old key signs after the rotation is refused
    forged = seal_entry(
        Ed25519PrivateKey.generate(), 4, 1, "coordinator", "sign-done", "", "", check_details({}), bytes(rows[-1][8])  # type: ignore[arg-type]
    )
    assert not verify_entries("coordinator", first, [*rows, forged.to_row()]).ok
    # twice: the chain follows both rotations
    again = rotate_audit_key(cfg)
    assert again.old_public == new.identity_public and verify_audit(cfg.audit_db, first).ok


def test_old_key_cannot_sign_after_rotation(tmp_path: Path) -> None:
    cfg, first = _coordinator(tmp_path)
    old = load_keystore(cfg.keystore, PASS)
    rotate_audit_key(cfg)
    with AuditLog.open(cfg.audit_db, component="coordinator", signing_key=load_keystore(cfg.keystore, PASS).identity) as log:
        rows = log.raw_rows()
    forged = seal_entry(old.identity, 3, 1, "coordinator", "sign-done", "", "", check_details({}), bytes(rows[-1][8]))  # type: ignore[arg-type]
    report = verify_entries("coordinator", first, [*rows, forged.to_row()])
    assert not report.ok and report.first_broken == 3


def test_a_kill_after_the_entry_is_finished_at_the_next_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, first = _coordinator(tmp_path)

    def killed(*a: object) -> None:
        raise KeyboardInterrupt  # dies before the keystore is replaced

    monkeypatch.setattr(audit_key, "_replace_keystore", killed)
    with pytest.raises(KeyboardInterrupt):
        rotate_audit_key(cfg)
    monkeypatch.undo()
    assert load_keystore(cfg.keystore, PASS).identity_public == first  # the old keystore, the log handed over
    assert finish_pending_rotation(cfg, PASS)
    new = load_keystore(cfg.keystore, PASS)
    with AuditLog.open(cfg.audit_db, component="coordinator", signing_key=new.identity):
        pass
    assert verify_audit(cfg.audit_db, first).ok and not staged_path(cfg.keystore).exists()


def test_a_kill_before_the_entry_leaves_the_old_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, first = _coordinator(tmp_path)

    def killed(*a: object, **k: object) -> None:
        raise SystemExit(9)

    monkeypatch.setattr(AuditLog, "rotate_key", killed)
    monkeypatch.setattr(audit_key.contextlib, "suppress", lambda *e: (_ for _ in ()).throw(SystemExit(9)))  # no cleanup: a kill
    with pytest.raises(SystemExit):
        rotate_audit_key(cfg)
    monkeypatch.undo()
    assert staged_path(cfg.keystore).exists()
    assert not finish_pending_rotation(cfg, PASS)
    assert not staged_path(cfg.keystore).exists()
    assert load_keystore(cfg.keystore, PASS).identity_public == first
    with AuditLog.open(cfg.audit_db, component="coordinator", signing_key=load_keystore(cfg.keystore, PASS).identity) as log:
        assert [e.action for e in log.entries()] == ["coordinator-start"]


def test_the_offline_rotation_refuses_a_keystore_another_process_holds(tmp_path: Path) -> None:
    """A second coordinator config naming the same keystore (other data dirs) is running: the
    offline rotation must not replace the keystore under it (it took no keystore lock)."""
    import subprocess
    import sys
    import textwrap

    from mpcnet.common.keystore_lock import KeystoreBusy

    cfg, _ = _coordinator(tmp_path)
    before = cfg.keystore.read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from mpcnet.common.keystore_lock import hold_keystore
        with hold_keystore(Path({str(cfg.keystore)!r})):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        with pytest.raises(KeystoreBusy, match=f"pid {holder.pid}"):
            rotate_audit_key(cfg)
    finally:
        holder.kill()
        holder.wait()
    assert cfg.keystore.read_bytes() == before
