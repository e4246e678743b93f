"""What every ``click`` entry point of the project shares (``mpc-cluster``, ``scripts/demo``,
``mpc-node``, ``mpc-coordinator``): ASCII-only numeric options and :func:`run`, which turns every
way a command can end into one exit code and at most one line on stderr, never a traceback.

Exit codes (:func:`run`):

* the command's own return value (an ``int``; ``None`` is 0);
* 2 for a usage error (unknown command or option, a missing or malformed value), printed as
  ``PROG: error: MESSAGE (see 'PROG ... --help')`` on one line;
* 130 when interrupted (Ctrl-C, SIGINT): ``PROG: interrupted``;
* 141 (128 + SIGPIPE) when the reader of stdout went away (``PROG status --json | head -1``):
  nothing is printed, the rest of the output is discarded;
* a :class:`click.ClickException`'s own code (1 for the commands' "failed"): ``PROG: MESSAGE``;
* 1 for anything unexpected: ``PROG: failed: TYPE: MESSAGE`` on one line.

Every message is passed through :func:`governance.text.escape`, so a caller's text in it (a path,
an option value) cannot add lines or carry terminal escapes.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from governance.text import escape, quote

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

_INT_RE = re.compile(r"-?[0-9]{1,18}")
_FLOAT_RE = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?")


class AsciiInt(click.ParamType[int]):
    """An integer written in ASCII digits only (``int()`` also reads full-width and other Unicode
    digits: ``--nodes`` in full-width digits must not be read as a number), at most 18 of them, within ``[lo, hi]``."""

    name = "integer"

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            n = value
        elif isinstance(value, str) and _INT_RE.fullmatch(value):
            n = int(value)
        else:
            self.fail(f"must be an integer in ASCII digits, got {quote(value)}", param, ctx)
        if not self.lo <= n <= self.hi:
            self.fail(f"must be in [{self.lo}, {self.hi}], got {n}", param, ctx)
        return n

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return f"[{self.lo}-{self.hi}]"


class AsciiSeconds(click.ParamType[float]):
    """A duration in seconds, ``DIGITS[.DIGITS]`` in ASCII, within ``(0, hi]``."""

    name = "seconds"

    def __init__(self, hi: float) -> None:
        self.hi = hi

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            s = float(value)
        elif isinstance(value, str) and _FLOAT_RE.fullmatch(value):
            s = float(value)
        else:
            self.fail(f"must be a number of seconds in ASCII digits, got {quote(value)}", param, ctx)
        if not 0 < s <= self.hi:
            self.fail(f"must be more than 0 and at most {self.hi:g} seconds, got {s:g}", param, ctx)
        return s


class PathArg(click.ParamType[Path]):
    """A file or directory path (not checked for existence: the command says what is wrong with
    it): non-empty, no NUL, at most 4096 characters; with ``resolve``, ``~`` expanded and made
    absolute (a usage error if that fails: an unknown user, an unreadable parent)."""

    name = "path"

    def __init__(self, metavar: str = "PATH", *, resolve: bool = False) -> None:
        self.metavar, self.resolve = metavar, resolve

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        if isinstance(value, Path):
            path = value
        elif not isinstance(value, str) or not value or "\x00" in value or len(value) > 4096:
            self.fail(f"must be a path (non-empty, no NUL, at most 4096 characters), got {quote(value)}", param, ctx)
        else:
            path = Path(value)
        if not self.resolve:
            return path
        try:
            return path.expanduser().resolve()
        except (OSError, RuntimeError) as e:
            self.fail(f"cannot resolve {quote(str(path))}: {getattr(e, 'strerror', None) or e}", param, ctx)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return self.metavar


def say(prog: str, message: str) -> None:
    """``PROG: MESSAGE`` on stderr, escaped to one line."""
    with contextlib.suppress(OSError, ValueError):
        print(f"{prog}: {escape(message)}", file=sys.stderr, flush=True)


def _command_path(command: click.Command, args: Sequence[str], prog: str) -> str:
    """``PROG SUB ...``: the (sub)command ``args`` name, for an error raised without a context."""
    words = [prog]
    for arg in args:
        if not isinstance(command, click.Group) or arg not in command.commands:
            break
        command = command.commands[arg]
        words.append(arg)
    return " ".join(words)


def _usage_line(command: click.Command, args: Sequence[str], prog: str, e: click.UsageError) -> str:
    where = e.ctx.command_path if e.ctx is not None and e.ctx.command is not command else _command_path(command, args, prog)
    return f"error: {e.format_message()} (see '{escape(where)} --help')"


def _discard_stdout() -> None:
    """The reader of stdout is gone: point the descriptor at /dev/null, so the interpreter's
    final flush of whatever is still buffered cannot fail again (and print a warning)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (a test's capture): nothing to protect
        pass


def run(command: click.Command, argv: Sequence[str] | None, prog: str) -> int:
    """Run ``command`` on ``argv`` (None: ``sys.argv[1:]``) as program ``prog`` and return its exit
    code (see the module docstring); never raises, except SystemExit raised by the command
    itself (whose code is returned)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            with command.make_context(prog, args) as ctx:
                rv = command.invoke(ctx)
            sys.stdout.flush()
        except click.exceptions.Exit as e:  # --help, or ctx.exit(code)
            sys.stdout.flush()
            return e.exit_code
        except click.exceptions.Abort as e:  # click's name for KeyboardInterrupt and EOF at a prompt
            raise KeyboardInterrupt from e
    except click.UsageError as e:
        say(prog, _usage_line(command, args, prog, e))
        return EXIT_USAGE
    except click.ClickException as e:
        say(prog, e.format_message())
        return e.exit_code
    except KeyboardInterrupt:
        say(prog, "interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except SystemExit as e:
        code = e.code
        if code is None or isinstance(code, int):
            return code or 0
        say(prog, str(code))
        return EXIT_FAILED
    except Exception as e:  # a bug: still one line, never a traceback
        say(prog, f"failed: {type(e).__name__}: {e}")
        return EXIT_FAILED
    if rv is None:
        return EXIT_OK
    return int(rv)
