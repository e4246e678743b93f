"""Review of issue 14's escape fast path: a ``str`` subclass cannot vouch for itself.

``governance.text.escape`` returns printable ASCII as it is (``isascii() and isprintable()``);
a subclass overriding those methods (or ``__iter__``, or ``__str__`` returning such a subclass)
must still have every control, escape and bidi character escaped.
"""

from __future__ import annotations

from collections.abc import Iterator

from governance import text

HOSTILE = "ok\x1b[31mred\n\u202efake\r"


class Liar(str):
    def isascii(self) -> bool:
        return True

    def isprintable(self) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter("harmless")

    def __str__(self) -> str:
        return self


class Wraps:
    def __str__(self) -> str:
        return Liar(HOSTILE)


def test_escape_of_a_lying_str_subclass_is_the_full_rule() -> None:
    want = text.escape(str.__str__(Liar(HOSTILE)))
    assert want == "ok\\x1b[31mred\\n\\u202efake\\r"
    got = text.escape(Liar(HOSTILE))
    assert got == want
    assert type(got) is str


def test_escape_of_an_object_whose_str_is_a_lying_subclass() -> None:
    got = text.escape(Wraps())
    assert got == "ok\\x1b[31mred\\n\\u202efake\\r"
    assert type(got) is str


def test_escape_of_a_printable_ascii_subclass_is_an_exact_str() -> None:
    got = text.escape(Liar("plain text"))
    assert got == "plain text" and type(got) is str
