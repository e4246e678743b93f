"""The README's command lines, read as a newcomer reads them: the ``mpc`` and ``mpc-cluster`` lines
of a section's ``sh`` blocks, resolved against the click trees (a renamed option or a missing
command in the README fails a test, not a reader's shell). Shared by the ``test_readme_*`` files."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click

from coordinator import main as coordinator_main
from mpc_node import main as node_main
from mpcnet.client import cli as mpc_cli
from mpcnet.cluster import cli as cluster_cli
from mpcnet.common import cliutil

README = Path(__file__).resolve().parents[1] / "README.md"
GLOBAL_WITH_VALUE = {"--cluster", "--as", "--endpoint", "--tls-cert", "--tls-key", "--tls-ca", "--signing-key", "--timeout",
                     "--rpc-timeout", "--genesis"}
PROGRAMS = ("mpc", "mpc-cluster", "mpc-node", "mpc-coordinator")


def section(title: str) -> str:
    """The README's section starting with the heading ``title`` (up to the next ``## ``)."""
    text = README.read_text(encoding="utf-8")
    start = text.index(title)
    return text[start:text.index("\n## ", start + 1)]


def command_lines(title: str) -> list[str]:
    """The section's shell lines starting with one of :data:`PROGRAMS` (continuations joined,
    comments and what follows a pipe or a redirection cut)."""
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", section(title), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith(tuple(f"{p} " for p in PROGRAMS)):
                lines.append(line.split(" | ", 1)[0].split(" > ", 1)[0].split(" || ", 1)[0])
    return lines


def _resolve(root: click.Command, words: list[str]) -> tuple[click.Command, list[str]]:
    """The command ``words`` names under ``root`` and the words left (its options and arguments)."""
    cmd: click.Command = root
    rest = list(words)
    while isinstance(cmd, click.Group) and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(click.Context(cmd), rest[0])
        assert sub is not None, f"no command {rest[0]!r} under {cmd.name!r}"
        cmd, rest = sub, rest[1:]
    assert not isinstance(cmd, click.Group), f"{cmd.name!r} needs a subcommand"
    return cmd, rest


def check_line(line: str) -> None:
    """Assert that ``line`` names an existing command and only options that command takes."""
    words = shlex.split(line.replace("[", " ").replace("]", " "))
    prog, words = words[0], words[1:]
    root: click.Command
    if prog == "mpc":
        root = mpc_cli.cli
        kept: list[str] = []
        it = iter(words)
        for w in it:  # global options may stand anywhere (mpc --help)
            if w in GLOBAL_WITH_VALUE:
                next(it)
            elif w != "--json":
                kept.append(w)
        words = kept
    elif prog == "mpc-cluster":
        root = cluster_cli.cli
    else:  # the servers: their off-line subcommands, else the server command itself
        module = node_main if prog == "mpc-node" else coordinator_main
        if words and words[0] in module.SUBCOMMANDS:
            root, words = cliutil.lazy_command(module.SUBCOMMANDS[words[0]]), words[1:]
        else:
            root = module._command
    cmd, rest = _resolve(root, words)
    known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    for w in rest:
        if w.startswith("--"):
            assert w.split("=", 1)[0] in known, f"{line!r}: {cmd.name!r} has no option {w!r}"
