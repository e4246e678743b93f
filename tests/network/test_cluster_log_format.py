"""``mpc-cluster up --log-format text|json`` (issue 15 gap): the option goes into every server
config ``prepare`` writes (``log_format``), an existing cluster keeps its format when the option
is absent, and a bad value is a one-line usage error (cliutil's Choice)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from mpcnet.cluster import cli as cluster_cli
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.cluster.log_format import configured_log_format, log_format_section, running_mismatch


def formats(lay: Layout) -> set[str]:
    paths = [lay.coordinator_config] + [lay.node_config(i) for i in range(1, lay.nodes + 1)]
    return {json.loads(p.read_text())["log_format"] for p in paths}


def test_prepare_writes_the_format_and_a_rerun_keeps_it(tmp_path: Path) -> None:
    lay = prepare(tmp_path, 2, 2, scrypt_n=1024, log_format="json")
    assert formats(lay) == {"json"}
    lay = prepare(tmp_path, 2, 2, scrypt_n=1024)  # `up` without the option: what the configs say
    assert formats(lay) == {"json"}
    lay = prepare(tmp_path, 2, 2, scrypt_n=1024, log_format="text")
    assert formats(lay) == {"text"}
    assert formats(prepare(tmp_path / "new", 2, 2, scrypt_n=1024)) == {"text"}  # a new cluster: text


def test_section_and_mismatch(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    assert configured_log_format(cfg) is None and log_format_section(None, cfg) == {"log_format": "text"}
    cfg.write_text(json.dumps({"log_format": "json"}))
    assert log_format_section(None, cfg) == {"log_format": "json"} and log_format_section("text", cfg) == {"log_format": "text"}
    cfg.write_text(json.dumps({"log_format": "xml\x1b"}))
    assert configured_log_format(cfg) is None  # a damaged value is not carried over
    with pytest.raises(ValueError, match="log_format"):
        log_format_section("xml", cfg)
    cfg.write_text(json.dumps({"log_format": "json"}))
    assert running_mismatch(None, cfg) is None and running_mismatch("json", cfg) is None
    msg = running_mismatch("text", cfg)
    assert msg is not None and msg.startswith("--log-format: ") and "\n" not in msg


@pytest.mark.parametrize("value", ["xml", "JSON", "json\x1b[2J"])
def test_a_bad_log_format_is_a_one_line_usage_error(tmp_path: Path, value: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cluster_cli.main(["up", "--dir", str(tmp_path / "c"), "--log-format", value])
    text = err.getvalue()
    assert code == 2 and out.getvalue() == "" and text.count("\n") == 1, text
    assert text.startswith("mpc-cluster: error: ") and "--log-format" in text and "must be one of text, json" in text
    assert "\x1b" not in text and not (tmp_path / "c").exists()  # refused before anything is written
