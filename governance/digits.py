"""One definition of a whole number written as text by a caller: ASCII digits only.

Python's ``int(text)`` accepts far more than a number a person or script typed: any Unicode
decimal digit (``int("\\uff11\\uff12") == 12, full-width digits``, Arabic-Indic, Devanagari, ...), underscores between digits
(``"1_0"``), surrounding whitespace (``" 1"``, ``"1\\n"``) and a sign (``"+1"``). Every place that
reads a number from text (CLI options, derivation paths, environment variables, stored text)
uses :func:`parse_uint` instead, so ``m/\\uff11\\uff12`` is refused rather than read as ``m/12``.

The rule is :data:`DECIMAL_RE` with ``re.fullmatch``: 1-20 characters of ``[0-9]`` (a leading
zero is allowed: ``007`` is 7). :mod:`crypto_core.bip32` (a pure layer that cannot import this
package) applies the same rule to path indices; tests/test_digits.py checks both agree.

Errors: :class:`governance.errors.GovernanceError` naming the field, quoting at most a short
escaped prefix of the input.
"""

from __future__ import annotations

import re

from .errors import GovernanceError
from .text import quote

DECIMAL_RE = re.compile(r"[0-9]{1,20}")
"""A whole number as text: ASCII digits only (no sign, space, underscore or other script's digits)."""


def parse_uint(text: object, field: str, lo: int = 0, hi: int = 2**64 - 1) -> int:
    """The whole number ``text`` writes, which must be in ``[lo, hi]`` (both inclusive).

    ``text`` must be a ``str`` matching :data:`DECIMAL_RE` in full. Raises GovernanceError
    naming ``field``: not ASCII digits (quoting a short escaped prefix), or out of range.
    """
    if not isinstance(text, str) or DECIMAL_RE.fullmatch(text) is None:
        if isinstance(text, str) and text.isascii() and text.isdigit():  # digits 0-9, but too many of them
            raise GovernanceError(field, f"must be {lo}..{hi} (at most 20 digits), got {quote(text)}")
        raise GovernanceError(field, f"must be a whole number written with the digits 0-9, got {quote(text)}")
    n = int(text)
    if not lo <= n <= hi:
        raise GovernanceError(field, f"must be {lo}..{hi}, got {n}")
    return n
