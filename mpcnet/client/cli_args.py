"""What only the ``mpc`` CLI adds to the project's one command-line foundation
(:mod:`mpcnet.common.cliutil`: the parameter types for numbers, seconds, hex, ids, text, paths and
files, and ``run``): its exit codes (:class:`Exit`, :data:`EXIT_TABLE`) and :class:`PathText`, a
BIP32 path checked by the SDK's own parser.
"""

from __future__ import annotations

import enum
from typing import Any

import click

from governance.text import escape, quote
from mpcnet.common import cliutil


class Exit(enum.IntEnum):
    """The ``mpc`` exit codes: the same outcome gives the same code in every command."""

    OK = cliutil.EXIT_OK  # success; a waited-for request ended DONE; an audit trail verified
    FAILED = cliutil.EXIT_FAILED  # refused: by the server; a waited-for request ended REJECTED/EXPIRED/FAILED; an audit trail broken
    USAGE = cliutil.EXIT_USAGE  # bad arguments, a missing/unreadable file, a wrong key file, not a cluster directory
    NO_ANSWER = 3  # the coordinator did not answer (unreachable, RPC deadline), or --timeout passed before the request ended
    INTERRUPTED = cliutil.EXIT_INTERRUPTED  # Ctrl-C
    BROKEN_PIPE = cliutil.EXIT_BROKEN_PIPE  # stdout was closed early (e.g. '| head'): 128 + SIGPIPE, nothing printed


EXIT_TABLE = (
    "Exit status:\n\n"
    "\b\n"
    "  0    success: the command did what it was asked; a waited-for request ended DONE;\n"
    "       an audit trail verified\n"
    "  1    refused or failed: the server refused the call; a waited-for request ended\n"
    "       REJECTED, EXPIRED or FAILED; an audit trail does not verify\n"
    "  2    usage error: bad arguments, a missing or unreadable file, a wrong key file,\n"
    "       not a cluster directory\n"
    "  3    no answer: the coordinator is unreachable or did not answer in time, or\n"
    "       --timeout passed before the request ended\n"
    "  130  interrupted (Ctrl-C)\n"
    "  141  stdout closed early (e.g. '| head'): nothing more is printed"
)


class PathText(click.ParamType[str]):
    """A BIP32 path such as ``m/0/1`` written in ASCII (``m`` for the key itself)."""

    name = "PATH"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from crypto_core.errors import UsageError
        from mpcnet.client.errors import MpcError
        from mpcnet.client.sdk import to_path

        if not isinstance(value, str) or not value.isascii() or len(value) > 200:
            self.fail(f"must be a path such as m/0/1 in ASCII digits, got {quote(value)}", param, ctx)
        try:
            to_path(value)
        except (UsageError, ValueError) as e:
            reason = e.message if isinstance(e, MpcError) else str(e)  # the reason, not the gRPC code name
            self.fail(f"{escape(reason)} (got {quote(value)})", param, ctx)
        return value
