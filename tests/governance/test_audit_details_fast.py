"""governance.audit.check_details' fast path (issue 14: plain items in plain sorted order, the
key test remembered per key) and mpcnet.common.stores.audit._once_fields' single check of the
merged details: the same result -- the same copy in the same order, or the same error naming the
same field -- as the plain definitions they replace, on any input (hypothesis)."""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings, strategies as st

from governance import audit as gaudit
from governance.audit import EVENT_KEY, MAX_DETAILS, check_details, check_entry_fields, check_token
from governance.errors import GovernanceError
from mpcnet.common.stores.audit import OnceEntry, _once_fields
from tests.test_suite_settings import scaled


def _reference_check_details(value: object, field: str = "details") -> Mapping[str, Any]:
    """check_details as it was: every item judged in the key function's order."""
    if not isinstance(value, Mapping):
        raise GovernanceError(field, "must be a mapping of str to str, int or bool")
    if len(value) > MAX_DETAILS:
        raise GovernanceError(field, f"more than {MAX_DETAILS} items")
    out: dict[str, Any] = {}
    for key in sorted(value, key=lambda k: k if isinstance(k, str) else ""):
        item = value[key]
        gaudit._check_item(key, item, field)
        out[key] = item
    return types.MappingProxyType(out)


def _reference_once_fields(item: OnceEntry) -> Mapping[str, Any]:
    check_token(item.event, "event")
    merged = dict(check_entry_fields(item.actor, item.action, item.request_id, item.outcome, item.details))
    if merged.setdefault(EVENT_KEY, item.event) != item.event:
        raise GovernanceError(f"details[{EVENT_KEY!r}]", "conflicts with event")
    return _reference_check_details(merged)


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        out = fn(*args)
    except GovernanceError as e:
        return "error", (e.field, e.reason)
    return "ok", list(out.items())


class _Str(str):
    pass


keys = st.one_of(
    st.sampled_from(["key_id", "request_hash", "approved_by", "event", "queued_ms", "a", "z9", "seed_phrase",
                     "my_password", "Bad", "-x", "", "x" * 64, "x" * 65]),
    st.text(max_size=8),
    st.integers(-3, 3),
    st.builds(_Str, st.sampled_from(["key_id", "zz"])),
)
values = st.one_of(
    st.booleans(), st.integers(min_value=-(2**64), max_value=2**64), st.text(max_size=20),
    st.sampled_from(["a\x00b", "\ud800", "x" * 5000, 1.5, None, b"raw"]), st.builds(_Str, st.text(max_size=4)),
)
details = st.dictionaries(keys, values, max_size=MAX_DETAILS + 2)


@settings(max_examples=scaled(600), deadline=None)
@given(details)
def test_check_details_answers_as_the_plain_definition(d: dict[Any, Any]) -> None:
    assert _outcome(check_details, d) == _outcome(_reference_check_details, d)
    assert _outcome(check_details, d) == _outcome(check_details, d)  # the remembered keys change nothing


@settings(max_examples=scaled(400), deadline=None)
@given(details, st.sampled_from(["ev-1", "event-abc", "Bad event", ""]), st.sampled_from(["approver1", "bad name!"]))
def test_once_fields_answers_as_the_two_checks_did(d: dict[Any, Any], event: str, actor: str) -> None:
    item = OnceEntry(actor, "sign-decision", event, "", "approve", d)
    assert _outcome(_once_fields, item) == _outcome(_reference_once_fields, item)


def test_once_fields_edge_cases() -> None:
    for d in (None, {}, {EVENT_KEY: "ev-1"}, {EVENT_KEY: "other"}, {EVENT_KEY: 5}, {EVENT_KEY: "a\x00"},
              dict.fromkeys((f"k{i}" for i in range(MAX_DETAILS)), 1), dict.fromkeys((f"k{i}" for i in range(MAX_DETAILS - 1)), 1),
              [("a", 1)], {"zz": "x\x00", EVENT_KEY: "other"}):
        item = OnceEntry("approver1", "sign-decision", "ev-1", "", "", d)  # type: ignore[arg-type]
        assert _outcome(_once_fields, item) == _outcome(_reference_once_fields, item), d


def test_the_remembered_keys_are_bounded() -> None:
    for i in range(gaudit._PLAIN_KEYS_MAX + 10):
        check_details({f"k{i}": 1})
    assert len(gaudit._PLAIN_KEYS) <= gaudit._PLAIN_KEYS_MAX
    assert check_details({"k1": 1}) == {"k1": 1}


def test_a_refused_key_is_never_remembered() -> None:
    for _ in range(3):
        for bad in ("my_seed", "Bad", "x" * 65):
            try:
                check_details({bad: 1})
            except GovernanceError as e:
                assert e.field.startswith("details[")
            else:
                raise AssertionError(bad)
            assert bad not in gaudit._PLAIN_KEYS


def test_concurrent_checks_while_the_remembered_keys_are_cleared() -> None:
    import threading

    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(3000):
                d = {f"t{t}k{i % 1500}": i, "approved_by": "a", "my_password": "x"} if i % 7 == 0 else {f"t{t}k{i}": i}
                if "my_password" in d:
                    try:
                        check_details(d)
                    except GovernanceError as e:
                        assert e.field == "details['my_password']"
                    else:
                        raise AssertionError("a secret key passed")
                else:
                    assert list(check_details(d).items()) == sorted(d.items())
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
