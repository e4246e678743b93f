"""One definition of every identifier's alphabet and of the text a caller may send.

Every component (coordinator, nodes, audit store, CLI, the Node example, ``spec/governance-v1.md``)
uses these rules, always with ``re.fullmatch`` (a pattern ending in ``$`` matched with ``re.match``
accepts a trailing newline), so an id that one component accepts is the same id everywhere, and
text that reaches a screen, a log or the audit trail cannot carry control characters.

- :data:`REQUEST_ID_RE`: request ids (signing and keygen), 1-64 of ``[A-Za-z0-9._-]``.
- :data:`NAME_RE`: names (admins, approvers, requesters, audit actors, components), 1-64 of
  ``[A-Za-z0-9._-]`` starting with a letter or digit.
- :func:`check_text`: free text (key labels, request descriptions): a ``str`` of at most
  ``max_chars`` code points, encodable as UTF-8, with no character of the Unicode categories
  Cc (controls: NUL, newline, tab, ESC, ...), Cf (invisible formatting: zero-width characters,
  the bidirectional overrides and isolates U+202A-U+202E, U+2066-U+2069, ...), Cs (surrogates),
  Co (private use), Cn (unassigned), Zl and Zp (line and paragraph separators).
- :func:`quote`: a caller's value inside an error message: a short, escaped prefix.
- :func:`escape`: any text on one terminal line: every non-printable character escaped.

Errors: :class:`governance.errors.GovernanceError` naming the field.
"""

from __future__ import annotations

import re
import unicodedata

from .errors import GovernanceError

REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
REQUEST_ID_RULE = "must be 1-64 characters of [A-Za-z0-9._-]"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = "must be 1-64 characters of [A-Za-z0-9._-] starting with a letter or digit"

FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Unicode general categories refused in caller text (see the module docstring)."""

QUOTE_CHARS = 40
"""The most characters of a caller's value an error message quotes."""


def check_request_id(value: object, field: str = "request_id", *, allow_empty: bool = False) -> str:
    """``value`` if it is a request id (or ``""`` when ``allow_empty``); else GovernanceError."""
    if isinstance(value, str) and (REQUEST_ID_RE.fullmatch(value) or (allow_empty and value == "")):
        return value
    raise GovernanceError(field, REQUEST_ID_RULE + (" (or empty)" if allow_empty else "") + f", got {quote(value)}")


def is_request_id(value: object) -> bool:
    """True iff ``value`` is a request id (:data:`REQUEST_ID_RE`, full match)."""
    return isinstance(value, str) and REQUEST_ID_RE.fullmatch(value) is not None


def check_name(value: object, field: str) -> str:
    """``value`` if it is a name (:data:`NAME_RE`, full match); else GovernanceError."""
    if isinstance(value, str) and NAME_RE.fullmatch(value):
        return value
    raise GovernanceError(field, f"{NAME_RULE}, got {quote(value)}")


def forbidden_char(value: str) -> str | None:
    """The first character of ``value`` that caller text may not hold, or None."""
    for ch in value:
        if unicodedata.category(ch) in FORBIDDEN_CATEGORIES:
            return ch
    return None


def check_text(value: object, field: str, max_chars: int) -> str:
    """``value`` if it is acceptable caller text of at most ``max_chars`` characters.

    Raises GovernanceError naming ``field``: not a ``str``, too long, not encodable as UTF-8, or
    holding a character of :data:`FORBIDDEN_CATEGORIES` (named by code point, e.g. U+000A).
    """
    if not isinstance(value, str):
        raise GovernanceError(field, "must be a string")
    if len(value) > max_chars:
        raise GovernanceError(field, f"longer than {max_chars} characters ({len(value)})")
    bad = forbidden_char(value)
    if bad is not None:
        name = unicodedata.name(bad, "control or unassigned character")
        raise GovernanceError(field, f"contains U+{ord(bad):04X} ({name}); control, format and separator characters are not allowed")
    return value


MAX_COMBINING_RUN = 4
"""The most combining marks in a row that :func:`escape` shows as they are (accented letters and
scripts with stacked vowel signs need a few; hundreds on one character draw over the lines above
and below it in many terminals)."""


def escape(text: object) -> str:
    """``text`` on one terminal line: every character that is not printable (``str.isprintable``:
    controls, format and bidi characters, separators other than space, unassigned code points)
    written as a Python escape (``\\n``, ``\\x1b``, ``\\u202e``), and so is every combining mark
    (categories Mn, Me) past :data:`MAX_COMBINING_RUN` in a row; other text kept."""
    s = str(text)
    if type(s) is not str:  # a subclass could override isascii/isprintable/__iter__: its exact characters
        s = str.__str__(s)
    if s.isascii() and s.isprintable():  # issue 14: nothing to escape (ASCII has no combining marks)
        return s
    out: list[str] = []
    run = 0
    for c in s:
        run = run + 1 if unicodedata.category(c) in ("Mn", "Me") else 0
        out.append(c if c.isprintable() and run <= MAX_COMBINING_RUN else ascii(c)[1:-1])
    return "".join(out)


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """A caller's value for an error message: ``repr``-style, escaped (ASCII only), at most about
    ``limit`` characters of it, with the full length named when it was cut."""
    if isinstance(value, (bytes, bytearray)):
        shown = bytes(value[:limit]).hex()
        more = f"... ({len(value)} bytes)" if len(value) > limit else ""
        return f"0x{shown}{more}"
    text = value if isinstance(value, str) else str(value)
    head = ascii(text[:limit])
    return head + (f"... ({len(text)} characters)" if len(text) > limit else "")
