"""Audit key rotation (governance.audit: one rule): an ``audit-key-rotated`` entry signed by the
current key hands the log over to the key it names; entries after it verify only with that key."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.audit import (
    KEY_ROTATED_ACTION,
    NEW_KEY_DETAIL,
    check_details,
    genesis_hash,
    seal_entry,
    verify_entries,
)
from governance.errors import GovernanceError
from mpcnet.common.stores.audit import AuditLog, verify_audit

from .gov_util import NOW_MS, raw


def _clock() -> object:
    t = [NOW_MS]

    def now() -> int:
        t[0] += 1
        return t[0]

    return now


def _rotated_log(tmp_path: Path) -> tuple[Path, Ed25519PrivateKey, Ed25519PrivateKey]:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    path = tmp_path / "audit.db"
    with AuditLog.open(path, component="coordinator", signing_key=old, clock=_clock()) as log:  # type: ignore[arg-type]
        log.append("coordinator", "start", outcome="ok")
        entry = log.rotate_key("coordinator", new)
        assert entry.action == KEY_ROTATED_ACTION and entry.details[NEW_KEY_DETAIL] == raw(new).hex()
        assert log.signing_public_key == raw(new) and log.public_key == raw(old)
        log.append("coordinator", "after", outcome="ok")
    return path, old, new


def test_chain_verifies_across_rotation_and_reopens_only_with_new_key(tmp_path: Path) -> None:
    path, old, new = _rotated_log(tmp_path)
    report = verify_audit(path, raw(old))
    assert report.ok and report.entries == 3, report
    with AuditLog.open(path, component="coordinator", signing_key=new) as log:
        log.append("coordinator", "reopened")
        rows = log.raw_rows()
    assert verify_entries("coordinator", raw(old), rows).ok
    with pytest.raises(GovernanceError, match="signing_key"):
        AuditLog.open(path, component="coordinator", signing_key=old)


def test_entry_signed_by_old_key_after_rotation_is_refused(tmp_path: Path) -> None:
    path, old, new = _rotated_log(tmp_path)
    with AuditLog.open(path, component="coordinator", signing_key=new) as log:
        rows = log.raw_rows()
    last = rows[-1]
    forged = seal_entry(old, 4, NOW_MS + 100, "coordinator", "forged", "", "", check_details({}), bytes(last[8]))  # type: ignore[arg-type]
    report = verify_entries("coordinator", raw(old), [*rows, forged.to_row()])
    assert not report.ok and report.first_broken == 4 and "signature" in report.reason
    # the rotated-to key does not verify entries before the rotation either
    assert not verify_entries("coordinator", raw(new), rows).ok


def test_rotation_entry_must_be_signed_by_the_current_key(tmp_path: Path) -> None:
    old, intruder = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    prev = genesis_hash("coordinator", raw(old))
    first = seal_entry(old, 1, NOW_MS, "coordinator", "start", "", "", check_details({}), prev)
    handover = seal_entry(
        intruder, 2, NOW_MS + 1, "coordinator", KEY_ROTATED_ACTION, "", "",
        check_details({NEW_KEY_DETAIL: raw(intruder).hex()}), first.entry_hash,
    )
    report = verify_entries("coordinator", raw(old), [first.to_row(), handover.to_row()])
    assert not report.ok and report.first_broken == 2


@pytest.mark.parametrize("value", ["zz", "00" * 31, "AB" * 32, None])
def test_malformed_rotation_entry_breaks_the_chain(value: object) -> None:
    key = Ed25519PrivateKey.generate()
    details = check_details({} if value is None else {NEW_KEY_DETAIL: value})
    entry = seal_entry(key, 1, NOW_MS, "coordinator", KEY_ROTATED_ACTION, "", "", details, genesis_hash("coordinator", raw(key)))
    report = verify_entries("coordinator", raw(key), [entry.to_row()])
    assert not report.ok and report.first_broken == 1 and "new_public_key" in report.reason


def test_rotate_to_same_key_refused(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    with AuditLog.open(tmp_path / "a.db", component="node-1", signing_key=key) as log:
        with pytest.raises(GovernanceError, match="new_signing_key"):
            log.rotate_key("node-1", key)
        assert log.head() is None
