"""Issue 14 (coordinator CPU per signature): :func:`governance.audit.check_details` and
:func:`governance.audit.encode_details` take a fast path for plain items, and
:func:`governance.text.escape` one for printable ASCII; these tests hold them to the full rules:
the same result, or the same error (field and reason), for any input."""

from __future__ import annotations

import types
import unicodedata
from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings, strategies as st

from governance import text
from governance._checks import check_int
from governance.audit import (
    _SECRET_HINTS,
    AUDIT_DETAILS_TAG,
    MAX_DETAIL_TEXT,
    MAX_DETAILS,
    check_details,
    check_token,
    encode_details,
)
from governance.encoding import I64_MAX, I64_MIN, Encoder
from governance.errors import GovernanceError
from governance.text import MAX_COMBINING_RUN, escape

from ..conftest import scaled


def reference_check_details(value: object, field: str = "details") -> Mapping[str, Any]:
    """check_details as it was before the fast path (main 18ea169), verbatim."""
    if not isinstance(value, Mapping):
        raise GovernanceError(field, "must be a mapping of str to str, int or bool")
    if len(value) > MAX_DETAILS:
        raise GovernanceError(field, f"more than {MAX_DETAILS} items")
    out: dict[str, Any] = {}
    for key in sorted(value, key=lambda k: k if isinstance(k, str) else ""):
        check_token(key, f"{field}[{text.quote(key, 80)}]")
        if any(hint in key for hint in _SECRET_HINTS):
            raise GovernanceError(f"{field}[{text.quote(key, 80)}]", "audit details must never hold secrets")
        item = value[key]
        if isinstance(item, bool):
            pass
        elif isinstance(item, int):
            check_int(item, f"{field}[{text.quote(key, 80)}]", I64_MIN, I64_MAX)
        elif isinstance(item, str):
            if len(item) > MAX_DETAIL_TEXT or "\x00" in item:
                raise GovernanceError(f"{field}[{text.quote(key, 80)}]", f"must be at most {MAX_DETAIL_TEXT} characters, no NUL")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise GovernanceError(f"{field}[{text.quote(key, 80)}]", "is not encodable as UTF-8") from None
        else:
            raise GovernanceError(f"{field}[{text.quote(key, 80)}]", "must be a str, int or bool")
        out[key] = item
    return types.MappingProxyType(out)


def reference_encode_details(details: Mapping[str, Any]) -> bytes:
    """encode_details as it was before the fast path (main 18ea169), verbatim."""
    enc = Encoder(AUDIT_DETAILS_TAG).count(len(details))
    for key in sorted(details):
        item = details[key]
        enc.text(key)
        if isinstance(item, bool):
            enc.uint(3).flag(item)
        elif isinstance(item, int):
            enc.uint(2).sint(item)
        else:
            enc.uint(1).text(item)
    return enc.finish()


def outcome(f: Any, value: object) -> tuple[str, object]:
    try:
        return "ok", f(value)
    except GovernanceError as e:
        return "error", (e.field, e.reason)


_keys = st.one_of(
    st.from_regex(r"[a-z0-9][a-z0-9._-]{0,63}", fullmatch=True),  # tokens
    st.sampled_from(["key_id", "seed_phrase", "my-secret", "passwordless", "a" * 64, "a" * 65, "", "Key", "x\x00"]),
    st.text(max_size=12),  # anything, surrogates included
    st.integers(0, 3),  # not a string
)
_values = st.one_of(
    st.booleans(),
    st.integers(I64_MIN - 2, I64_MAX + 2),
    st.sampled_from([I64_MIN - 1, I64_MIN, I64_MAX, I64_MAX + 1, 2**80]),
    st.sampled_from(["a" * MAX_DETAIL_TEXT, "a" * (MAX_DETAIL_TEXT + 1), "a\x00", "\ud800", "é" * 10]),
    st.text(max_size=40),
    st.floats(allow_nan=False),
    st.none(),
    st.binary(max_size=4),
)


@settings(max_examples=scaled(400), deadline=None)
@given(st.dictionaries(_keys, _values, max_size=8), st.sampled_from(["details", "entries[3].details"]))
def test_check_details_matches_the_full_rules(value: dict[object, object], field: str) -> None:
    got = outcome(lambda v: dict(check_details(v, field)), value)
    want = outcome(lambda v: dict(reference_check_details(v, field)), value)
    assert got == want
    if got[0] == "ok":
        assert list(check_details(value, field)) == list(reference_check_details(value, field))  # key order


def test_check_details_subclasses_and_limits() -> None:
    class Text(str):
        pass

    class Num(int):
        pass

    same = {Text("k1"): Text("v"), "k2": Num(5), "k3": True, "k4": "é\u202e"}
    assert dict(check_details(same)) == dict(reference_check_details(same))
    too_many = {f"k{i}": 1 for i in range(MAX_DETAILS + 1)}
    for bad in ({"k": I64_MAX + 1}, {"k": 1.5}, {"secret": "x"}, {"k": "a\x00"}, {"k": "\udc80"}, {"K": 1}, {1: 1}, [1], too_many):
        assert outcome(check_details, bad) == outcome(reference_check_details, bad)
        assert outcome(check_details, bad)[0] == "error"


@settings(max_examples=scaled(400), deadline=None)
@given(
    st.dictionaries(
        st.text(max_size=12), st.one_of(st.booleans(), st.integers(I64_MIN - 2, I64_MAX + 2), st.text(max_size=40)), max_size=8
    )
)
def test_encode_details_is_the_encoder_s_bytes(details: dict[str, Any]) -> None:
    assert outcome(encode_details, details) == outcome(reference_encode_details, details)


def test_encode_details_checked_entries() -> None:
    class Text(str):
        pass

    cases: list[Mapping[str, Any]] = [{}, {"a": True, "b": False, "c": 0, "d": -1, "e": I64_MIN, "f": I64_MAX, "g": "", "h": "é\u202e"},
                                      {Text("k"): Text("v")}, check_details({"key_id": "ab" * 32, "attempts": 1, "ok": True})]
    for details in cases:
        assert encode_details(details) == reference_encode_details(details)


def reference_escape(value: object) -> str:
    """escape as it was before the fast path (main 18ea169), verbatim."""
    out: list[str] = []
    run = 0
    for c in str(value):
        run = run + 1 if unicodedata.category(c) in ("Mn", "Me") else 0
        out.append(c if c.isprintable() and run <= MAX_COMBINING_RUN else ascii(c)[1:-1])
    return "".join(out)


@settings(max_examples=scaled(400), deadline=None)
@given(st.one_of(st.text(), st.text(st.characters(max_codepoint=127)), st.integers(), st.binary(max_size=8)))
def test_escape_matches_the_full_rules(value: object) -> None:
    assert escape(value) == reference_escape(value)


def test_escape_edge_cases() -> None:
    for value in ("", "plain ascii line: 1 2 3", "tab\there", "\x1b[31m", "\x7f", "a\u0301" * 9, "e" + "\u0301" * 20, "\u202e", " "):
        assert escape(value) == reference_escape(value)
