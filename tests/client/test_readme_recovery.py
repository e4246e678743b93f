"""README's "Backup and recovery" section, read as a newcomer does: every ``mpc`` and
``mpc-cluster`` line of its command block names a command that exists, with options that command
takes (a renamed option or a missing command in the README fails here, not in a reader's shell).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from mpcnet.client import cli as mpc_cli
from mpcnet.cluster import cli as cluster_cli

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Backup and recovery"
GLOBAL_WITH_VALUE = {"--cluster", "--as", "--endpoint", "--tls-cert", "--tls-key", "--tls-ca", "--signing-key", "--timeout",
                     "--rpc-timeout"}


def _command_lines() -> list[str]:
    """The section's shell lines starting with ``mpc`` or ``mpc-cluster`` (continuations joined, comments cut)."""
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    section = text[start:text.index("\n## ", start + 1)]
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith(("mpc ", "mpc-cluster ")):
                lines.append(line)
    return lines


def _resolve(root: click.Group, words: list[str]) -> tuple[click.Command, list[str]]:
    """The command ``words`` names under ``root`` and the words left (its options and arguments)."""
    cmd: click.Command = root
    rest = list(words)
    while isinstance(cmd, click.Group) and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(click.Context(cmd), rest[0])
        assert sub is not None, f"no command {rest[0]!r} under {cmd.name!r}"
        cmd, rest = sub, rest[1:]
    assert not isinstance(cmd, click.Group), f"{cmd.name!r} needs a subcommand"
    return cmd, rest


LINES = _command_lines()


def test_the_section_has_its_command_block() -> None:
    assert len(LINES) >= 20
    assert any(" backup piece " in f" {line} " for line in LINES)  # how the 'age -d' check gets its file


@pytest.mark.parametrize("line", LINES)
def test_each_readme_command_exists_with_its_options(line: str) -> None:
    words = shlex.split(line.replace("[", " ").replace("]", " "))
    prog, words = words[0], words[1:]
    if prog == "mpc":
        root: click.Group = mpc_cli.cli
        kept: list[str] = []
        it = iter(words)
        for w in it:  # global options may stand anywhere (mpc --help)
            if w in GLOBAL_WITH_VALUE:
                next(it)
            elif w != "--json":
                kept.append(w)
        words = kept
    else:
        root = cluster_cli.cli
    cmd, rest = _resolve(root, words)
    known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    for w in rest:
        if w.startswith("--"):
            assert w.split("=", 1)[0] in known, f"{line!r}: {cmd.name!r} has no option {w!r}"
