"""The auditor's remembered heads (``identities/NAME/audit-heads.json``) are what lets `audit
verify` notice a log whose newest entries were dropped. So the file is written atomically and
durably, and one that cannot be read is an error naming it: never silently treated as a first
run (which would disable the check and then overwrite the evidence with the shortened heads)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mpcnet.client import audit
from mpcnet.client.audit import HeadsError, load_heads, save_heads


@pytest.mark.parametrize("text", ["", "{", '{"coordinator": {"seq": "x"}}', "[1]", '{"coordinator": {"seq": 3}}'])
def test_an_unreadable_heads_file_is_an_error_naming_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "audit-heads.json"
    path.write_text(text)
    with pytest.raises(HeadsError, match="audit-heads.json"):
        load_heads(path)
    assert path.read_text() == text  # left for the auditor to look at


def test_verify_does_not_overwrite_an_unreadable_heads_file(tmp_path: Path) -> None:
    path = tmp_path / "audit-heads.json"
    path.write_text("{")
    with pytest.raises(HeadsError):
        audit.verify_cluster(None, {"audit": {}}, path)  # type: ignore[arg-type]
    assert path.read_text() == "{"


def test_a_missing_heads_file_is_a_first_run(tmp_path: Path) -> None:
    assert load_heads(tmp_path / "audit-heads.json") == {}
    assert load_heads(None) == {}


def test_heads_are_written_durably_and_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[Any] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "audit-heads.json"
    heads = {"coordinator": (7, bytes(range(32))), "node-1": (2, b"\x01" * 32)}
    save_heads(path, heads)
    assert len(synced) >= 2  # the file and its directory
    assert load_heads(path) == heads
    assert [p.name for p in tmp_path.iterdir()] == ["audit-heads.json"]  # no temporary left
