"""`mpc audit export --out FILE` replaces FILE only with a whole export: a failed export leaves
an earlier file exactly as it was (never truncated or partial), and an unwritable destination is
refused before anything is fetched."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpcnet.client.cli import main


def test_a_failed_export_leaves_the_earlier_file(tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    out.write_text("earlier export\n")
    assert main(["audit", "export", "--jsonl", "--db", str(tmp_path / "missing.db"), "--out", str(out)]) == 2
    assert out.read_text() == "earlier export\n"


def test_an_unwritable_destination_is_refused_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "some.db").write_bytes(b"")
    assert main(["audit", "export", "--jsonl", "--db", str(tmp_path / "some.db"), "--out", str(tmp_path / "no" / "x")]) == 2
    assert "--out: cannot write" in capsys.readouterr().err
