"""Every ``mpc`` subcommand, taken from the click command tree (so a new one is covered without a
change here), with hostile arguments: each answer is exit code 2, exactly one printable line on
stderr and no traceback. In-process (``main(argv)``), no server: the hostile values are refused
before any connection, and the one that would connect points at a directory that is no cluster."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import click
import pytest

from mpcnet.client import cli
from mpcnet.client.cli_args import PathText
from mpcnet.common.cliutil import Hex, Identifier, IndexList as NodeList, InFile, Seconds, Text, UInt

HOSTILE = ["-1", "5000000000", "\uff11\uff12", "1_0", "1e3", "a\x00b\n\x1b[2J", "\u202e", "x" * 100_000, "0x" + "g" * 64, ""]
GLOBAL_HOSTILE = [
    ("--timeout", "-1"), ("--timeout", "\uff11"), ("--timeout", "1e999"), ("--timeout", "nan"), ("--rpc-timeout", "0"),
    ("--as", "a\nb"), ("--as", "-x"), ("--endpoint", "host"), ("--endpoint", "h:99999"), ("--tls-cert", "/"),
    ("--tls-key", "/nonexistent/key.pem"), ("--signing-key", "/"),
]


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def one_line_usage_error(argv: list[str]) -> str:
    code, _out, err = run(argv)
    assert code == 2, (argv[:8], code, err[:300])
    assert err.endswith("\n") and err.count("\n") == 1, (argv[:8], err[:500])
    assert err.isascii() and err[:-1].isprintable() and "Traceback" not in err, (argv[:8], err[:300])
    assert err.startswith("mpc: error: ") and len(err) < 1000, err[:300]
    return err


def valid(param: click.Parameter) -> str:
    """A value the parameter accepts (so that one hostile value is what fails)."""
    t = param.type
    if isinstance(t, Hex):
        return "00" * t.size
    if isinstance(t, Identifier):
        return "r-1"
    if isinstance(t, click.Choice):
        return str(t.choices[0])
    if isinstance(t, UInt):
        return str(max(1, t.lo))
    if isinstance(t, NodeList):
        return "1,2"
    if isinstance(t, InFile):
        return __file__  # an existing regular file (its content is checked after connecting)
    return "m/0" if isinstance(t, PathText) else "x"


TREE = list(cli.commands())
# commands that work off-line and write a file given only valid arguments: tested on their own
# (tests/client/test_cli_backup.py::test_officer_keygen_refuses_hostile_paths)
OFFLINE_WRITERS = {("officer", "keygen")}
# the deployment's off-line commands (issue 13): no cluster at all; tests/deploy/test_enrolment.py
# ::test_offline_commands_refuse_hostile_arguments_with_one_line
OFFLINE_WRITERS |= {(g, c) for g, c in (("pki", "init-ca"), ("pki", "sign-csr"), ("identity", "init"), ("genesis", "new"),
                                        ("genesis", "show"), ("genesis", "sign"), ("genesis", "verify"))}


def test_the_tree_has_every_subcommand() -> None:
    names = {" ".join(path) for path, _ in TREE}
    assert names >= {
        "keygen", "keys", "pubkey", "status", "request sign", "request show", "request watch", "requests", "approve", "reject",
        "policy show", "policy propose", "policy approve", "policy push", "policy attest", "policy proposals",
        "audit verify", "audit export",
    }


@pytest.mark.parametrize("path,command", TREE, ids=[" ".join(p) for p, _ in TREE])
def test_every_subcommand_refuses_hostile_arguments_with_one_line_and_exit_2(
    tmp_path: Path, path: tuple[str, ...], command: click.Command
) -> None:
    if path in OFFLINE_WRITERS:
        pytest.skip("works without a cluster: valid arguments would write a file")
    base = ["--cluster", str(tmp_path), "--as", "admin1", *path]  # tmp_path holds no cluster.json: never connects
    required = [p for p in command.params if p.required and not getattr(p, "hidden", False)]
    args: list[str] = []
    for p in required:
        if isinstance(p, click.Argument):
            args.append(valid(p))
        else:
            args += [p.opts[0], valid(p)]
    if path == ("audit", "export"):
        args.append("--jsonl")  # the only format: a usage error without it
    if path == ("request", "sign"):
        args += ["--digest", "00" * 32]  # exactly one payload (issue 16: --digest, --message-file or --message-hex)
    # the command with valid arguments, but no cluster: a usage error naming --cluster
    assert "--cluster" in one_line_usage_error(base + args)
    one_line_usage_error(base + args + ["--no-such-option\x1b[2J"])
    one_line_usage_error(base + args + ["extra\x00argument"])
    for p in command.params:
        if getattr(p, "hidden", False) or (isinstance(p, click.Option) and p.is_flag) or p.name == "help":
            continue
        rest = list(args)
        for value in HOSTILE:
            if isinstance(p, click.Argument):
                argv = base + [value if a == valid(p) else a for a in rest] + ([value] if not p.required else [])
            else:
                argv = base + rest + [p.opts[0], value]
            err = one_line_usage_error(argv)
            typed = (Hex, Identifier, InFile, PathText, Seconds, Text, UInt, click.Choice)
            if isinstance(p.type, typed) and isinstance(p, click.Option):
                assert p.opts[0] in err or "--cluster" in err, err
    for opt, value in GLOBAL_HOSTILE:  # global options after the subcommand, too
        assert opt in one_line_usage_error(base + args + [opt, value])


@pytest.mark.parametrize("argv", [
    ["--cluster", "C", "--as", "requester1", "request", "sign", "--key", "00" * 32, "--digest", "11" * 32, "--ttl", "-1"],
    ["--cluster", "C", "--as", "requester1", "requests", "--limit", "5000000000"],
    ["--cluster", "C", "--as", "requester1", "requests", "--limit", "\uff11\uff12"],
    ["--cluster", "C", "--as", "admin1", "policy", "propose", "--quorum", "\uff12"],
    ["--cluster", "C", "--as", "admin1", "policy", "propose", "--rate", "\uff11/60"],
    ["--cluster", "C", "--as", "admin1", "pubkey", "--key", "00" * 32, "--path", "m/\uff11\uff12"],
    ["--cluster", "C", "--as", "approver1", "approve", "r-1", "--chain-id", "0"],
    ["--cluster", "C", "--as", "approver1", "approve", "kid-X\n"],
    ["--cluster", "C", "--as", "admin1", "keygen", "--label", "ops\x1b[8m\n<fake row>"],
    ["--cluster", "C", "--as", "admin1", "keygen", "--request-id", "batch 7"],
    ["--cluster", "C", "--as", "requester1", "request", "watch", "r-1", "--timeout", "-5"],
    ["--cluster", "C"],
    [],
    ["request"],
    ["nosuchcommand"],
])
def test_issue_examples_are_usage_errors(argv: list[str]) -> None:
    one_line_usage_error(argv)


def test_a_missing_or_directory_db_or_bad_public_key_is_a_usage_error(tmp_path: Path) -> None:
    key = "11" * 32
    assert "--db" in one_line_usage_error(["audit", "verify", "--db", str(tmp_path / "missing.db"), "--public-key", key])
    assert "--db" in one_line_usage_error(["audit", "verify", "--db", str(tmp_path), "--public-key", key])
    (tmp_path / "not-a-log.db").write_bytes(b"not sqlite")
    assert "--db" in one_line_usage_error(["audit", "verify", "--db", str(tmp_path / "not-a-log.db"), "--public-key", key])
    assert "--public-key" in one_line_usage_error(["audit", "verify", "--db", str(tmp_path / "not-a-log.db"), "--public-key", "zz"])
    assert "--public-key" in one_line_usage_error(["audit", "verify", "--db", str(tmp_path / "not-a-log.db")])
    assert "--db" in one_line_usage_error(["audit", "export", "--jsonl", "--db", str(tmp_path / "missing.db")])
