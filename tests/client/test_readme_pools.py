"""README's "Presignature pools" section (issue 14), read as a newcomer does: its ``mpc`` and
``mpc-cluster`` commands exist with their options, its ``scripts/bench_cluster.py`` lines use
options the script has, the configuration it shows is the local cluster's
(``mpcnet.cluster.presign_config.DEFAULT_PRESIGN``), the rows it names are the ones ``mpc status``
prints, and it covers what the issue asks it to explain."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mpcnet.client import cli_pools
from mpcnet.cluster.presign_config import DEFAULT_PRESIGN

from ..readme_commands import check_line, command_lines, section

TITLE = "## Presignature pools"
TEXT = section(TITLE)
LINES = command_lines(TITLE)
ROOT = Path(__file__).resolve().parents[2]


def test_the_section_shows_the_cluster_the_status_and_the_watch() -> None:
    joined = "\n".join(LINES)
    for needed in ("mpc-cluster up ", "--no-presign", " status", " keys", " status --watch", " --json status"):
        assert needed in joined, needed


@pytest.mark.parametrize("line", LINES)
def test_each_readme_command_exists_with_its_options(line: str) -> None:
    check_line(line)


def test_the_bench_lines_use_options_the_script_has() -> None:
    lines = [ln.split(" #", 1)[0] for ln in re.findall(r"^(scripts/bench_cluster\.py .*)$", TEXT, flags=re.M)]
    assert len(lines) >= 3 and any("--start 3/5" in ln for ln in lines)
    helptext = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_cluster.py"), "--help"], capture_output=True,
                              text=True, timeout=60, check=True).stdout
    for line in lines:
        for opt in re.findall(r"(--[a-z][a-z-]*)", line):
            assert opt in helptext, (line, opt)


def test_the_configuration_shown_is_the_local_clusters() -> None:
    [block] = re.findall(r"```json\n(.*?)```", TEXT, flags=re.S)
    assert json.loads("{" + block.strip() + "}") == {"presign": DEFAULT_PRESIGN}
    for name in DEFAULT_PRESIGN:
        assert f"`{name}`" in TEXT, name


def test_the_rows_named_are_the_ones_printed() -> None:
    assert f"`{cli_pools.SUMMARY_ROW}`" in TEXT and "`pool KEYPREFIX`" in TEXT and "`presigs N`" in TEXT
    assert "`presignature pools` line" in TEXT  # the watch's Activity row (cli_watch)


def test_it_explains_what_the_issue_asks() -> None:
    for needed in ("Groth-Shoup", "the t nodes that made it", "m/0", "{1,3}", "one transaction", "replayed = true",
                   "deletes every fresh", "refresh or reshare", "ban", "max_presignatures_per_key", "re-randomised",
                   "MAX_SIGN_ATTEMPTS", "**Speed.**", "two commits", "--warm"):
        assert needed in TEXT, needed
    assert "FIGURE_" not in TEXT  # no placeholder left
