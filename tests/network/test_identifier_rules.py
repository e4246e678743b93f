"""Identifiers are checked with ``re.fullmatch`` everywhere: ``re.match`` with a ``$`` anchor
accepts a trailing newline ("abc\\n"), which then reaches logs, audit entries and terminals.
A source rule (the whole class) and the two cases that broke it (issue 8 follow-up)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("crypto_core", "governance", "mpc_node", "coordinator", "mpcnet")


def test_no_product_code_validates_with_re_match() -> None:
    bad = []
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            for n, line in enumerate(f.read_text().splitlines(), 1):
                if re.search(r"\.match\(", line) and "fullmatch" not in line:
                    bad.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bad, "use re.fullmatch for validation:\n" + "\n".join(bad)


def test_trailing_newline_is_refused() -> None:
    from governance.text import NAME_RE, REQUEST_ID_RE
    from mpcnet.common.config import _HOSTPORT

    assert REQUEST_ID_RE.fullmatch("req-1") and not REQUEST_ID_RE.fullmatch("req-1\n")
    assert NAME_RE.fullmatch("node-1") and not NAME_RE.fullmatch("node-1\n")
    assert _HOSTPORT.fullmatch("localhost:7000") and not _HOSTPORT.fullmatch("localhost:7000\n")
