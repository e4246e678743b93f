"""``mpc-cluster up`` turns presignature pools on by default (issue 14, "Done means"): the
coordinator config ``prepare`` writes gets the contract's ``presign`` section with ``enabled:
true``; ``--no-presign`` writes ``enabled: false``; without either option an existing cluster
keeps its choice (and an operator's tuning of the other fields); ``up --no-presign`` on a
cluster running with pools is a one-line usage error, not ignored. A checkout whose coordinator
does not read the section (no ``coordinator.pool``) gets none, so its cluster still starts:
the config written here always loads with this checkout's coordinator config loader."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from coordinator.config import load_coordinator_config
from mpcnet.cluster import cli as cluster_cli, presign_config
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.cluster.presign_config import DEFAULT_PRESIGN, configured_presign, presign_section, running_mismatch

CONTRACT = {"enabled": True, "paths": [[]], "target": 16, "refill_at": 8, "cap": 32, "batch": 16, "max_parallel": 1}


def section(lay: Layout) -> dict[str, object] | None:
    doc = json.loads(lay.coordinator_config.read_text())
    value = doc.get("presign")
    assert value is None or isinstance(value, dict)
    return value


def test_the_defaults_are_the_contracts() -> None:
    assert DEFAULT_PRESIGN == CONTRACT


def test_prepare_turns_pools_on_and_no_presign_off_and_a_rerun_keeps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presign_config, "coordinator_reads_presign", lambda: True)
    lay = prepare(tmp_path, 2, 2, scrypt_n=1024)
    assert section(lay) == CONTRACT
    lay = prepare(tmp_path, 2, 2, scrypt_n=1024, presign=False)
    assert section(lay) == CONTRACT | {"enabled": False}
    doc = json.loads(lay.coordinator_config.read_text())  # an operator tunes the pool depth by hand
    doc["presign"]["target"] = 16
    lay.coordinator_config.write_text(json.dumps(doc))
    lay = prepare(tmp_path, 2, 2, scrypt_n=1024)  # `up` without the option: what the config says
    assert section(lay) == CONTRACT | {"enabled": False, "target": 16}
    lay = prepare(tmp_path, 2, 2, scrypt_n=1024, presign=True)
    assert section(lay) == CONTRACT | {"target": 16}


def test_a_coordinator_without_pools_gets_no_section_and_the_config_loads(tmp_path: Path) -> None:
    lay = prepare(tmp_path, 2, 2, scrypt_n=1024)
    if presign_config.coordinator_reads_presign():  # the merged tree: pools on, and the loader takes the section
        assert section(lay) == CONTRACT
    else:
        assert section(lay) is None
    load_coordinator_config(lay.coordinator_config)  # starts with this checkout's coordinator


def test_section_helpers(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    assert presign_section(None, cfg, supported=False) == {}
    assert configured_presign(cfg) is None and presign_section(None, cfg, supported=True) == {"presign": CONTRACT}
    cfg.write_text(json.dumps({"presign": {"enabled": "yes\x1b", "cap": 64, "bogus": 1}}))
    assert configured_presign(cfg) is None  # a damaged value is not carried over; unknown fields are dropped
    assert presign_section(None, cfg, supported=True) == {"presign": CONTRACT | {"cap": 64}}
    cfg.write_text("not json")
    assert presign_section(False, cfg, supported=True) == {"presign": CONTRACT | {"enabled": False}}


def test_running_mismatch(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"presign": {"enabled": True}}))
    assert running_mismatch(None, cfg) is None and running_mismatch(True, cfg) is None
    msg = running_mismatch(False, cfg)
    assert msg is not None and msg.startswith("--no-presign: ") and "pools on" in msg and "\n" not in msg
    cfg.write_text(json.dumps({}))  # no section: pools off
    assert running_mismatch(False, cfg) is None
    msg = running_mismatch(True, cfg)
    assert msg is not None and msg.startswith("--presign: ")


def test_up_help_lists_the_option() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cluster_cli.main(["up", "--help"]) == 0
    assert "--presign / --no-presign" in out.getvalue()
