"""Review of issue 14's batch head linking: a batch that fails half-way leaves nothing (one
transaction), the next append and the re-delivered batch link to the real head, and the file
verifies; a batch re-delivered after its commit appends nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.audit import public_key_of
from mpcnet.common.stores import audit as store
from mpcnet.common.stores.audit import AuditLog, OnceEntry, verify_audit

KEY = Ed25519PrivateKey.generate()


def test_a_batch_failing_half_way_leaves_the_chain_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.db"
    batch = [OnceEntry("coordinator", "sign-done", f"ev-{i}", "r1", "done", {"i": i}) for i in range(5)]
    with AuditLog.open(path, component="coordinator", signing_key=KEY) as log:
        log.append("coordinator", "policy-push")  # seq 1
        real = store.seal_entry  # type: ignore[attr-defined]
        calls = 0

        def failing(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise OSError("disk full")
            return real(*args, **kwargs)

        monkeypatch.setattr(store, "seal_entry", failing)
        with pytest.raises(OSError):
            log.append_many_once(batch)
        monkeypatch.setattr(store, "seal_entry", real)
        after = log.append("coordinator", "policy-push")
        assert after.seq == 2
        again = log.append_many_once(batch)  # re-delivered: all of it, after the real head
        assert [e.seq for e in again if e is not None] == [3, 4, 5, 6, 7]
        assert again[0] is not None and again[0].prev_hash == after.entry_hash
        assert log.append_many_once(batch) == [None] * 5
    report = verify_audit(path, public_key_of(KEY))
    assert report.ok and report.entries == 7


def test_two_writers_on_one_file_batching_at_once_keep_one_chain(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "a.db"
    with AuditLog.open(path, component="coordinator", signing_key=KEY) as a, AuditLog.open(
        path, component="coordinator", signing_key=KEY
    ) as b:
        errors: list[BaseException] = []

        def writer(log: AuditLog, name: str) -> None:
            try:
                for i in range(15):
                    log.append_many_once([OnceEntry("coordinator", "sign-done", f"{name}-{i}-{j}", "r1") for j in range(3)])
                    log.append("coordinator", "policy-push")
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(log, name)) for log, name in ((a, "a"), (b, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
    report = verify_audit(path, public_key_of(KEY))
    assert report.ok and report.entries == 2 * 15 * 4
