"""README's "Backup and recovery" section, read as a newcomer does: every ``mpc`` and
``mpc-cluster`` line of its command block names a command that exists, with options that command
takes (a renamed option or a missing command in the README fails here, not in a reader's shell).
"""

from __future__ import annotations

import pytest

from ..readme_commands import check_line, command_lines

LINES = command_lines("## Backup and recovery")


def test_the_section_has_its_command_block() -> None:
    assert len(LINES) >= 20
    assert any(" backup piece " in f" {line} " for line in LINES)  # how the 'age -d' check gets its file


@pytest.mark.parametrize("line", LINES)
def test_each_readme_command_exists_with_its_options(line: str) -> None:
    check_line(line)
