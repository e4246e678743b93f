"""Issue 14 (client CPU): a request's canonical bytes are decoded once per process
(:mod:`mpcnet.client.request_memo`); the result is the strict decode's, failures are never
remembered, the memo is bounded and safe to share between threads."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings, strategies as st

from governance.approval import SigningRequest
from governance.errors import GovernanceError
from mpcnet.client import request_memo
from mpcnet.client.request_memo import decode_request
from tests.test_suite_settings import scaled


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    request_memo.forget()
    yield
    request_memo.forget()


def _request(i: int = 0, description: str = "pay invoice 42") -> SigningRequest:
    return SigningRequest(
        f"req-{i}", b"\x01" * 32, i.to_bytes(32, "big"), (0, i), "requester1", description, 1_700_000_000_000,
        1_700_003_600_000, 1, b"\x02" * 32,
    )


@settings(max_examples=scaled(50), deadline=None)
@given(i=st.integers(0, 2**31 - 1), description=st.text(alphabet="abc xyz-42", max_size=40))
def test_the_memo_answers_what_the_strict_decode_answers(i: int, description: str) -> None:
    data = _request(i, description).encode()
    first = decode_request(data)
    assert first == SigningRequest.from_bytes(data)
    assert decode_request(bytes(bytearray(data))) is first  # remembered by the exact bytes (an equal copy)


def test_a_failure_is_not_remembered_and_raises_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _request().encode() + b"\x00"  # trailing byte: not canonical
    calls: list[bytes] = []
    real = SigningRequest.from_bytes

    def counting(b: bytes) -> SigningRequest:
        calls.append(b)
        return real(b)

    monkeypatch.setattr(SigningRequest, "from_bytes", staticmethod(counting))
    for _ in range(2):
        with pytest.raises(GovernanceError):
            decode_request(data)
    assert len(calls) == 2


def test_other_bytes_are_another_request() -> None:
    a, b = _request(1).encode(), _request(2).encode()
    assert decode_request(a).digest != decode_request(b).digest


def test_bounded_least_recently_used_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(request_memo, "MAX_REMEMBERED", 3)
    reqs = [_request(i).encode() for i in range(4)]
    first = decode_request(reqs[0])
    decode_request(reqs[1])
    decode_request(reqs[2])
    assert decode_request(reqs[0]) is first  # used again: now the newest
    decode_request(reqs[3])  # evicts reqs[1], the least recently used
    assert len(request_memo._decoded) == 3
    assert reqs[1] not in request_memo._decoded and reqs[0] in request_memo._decoded


def test_threads_share_it_safely() -> None:
    datas = [_request(i).encode() for i in range(64)]
    errors: list[BaseException] = []

    def run(seed: int) -> None:
        try:
            for k in range(500):
                d = datas[(seed * 7 + k) % len(datas)]
                assert decode_request(d).encode() == d
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({id(decode_request(d)) for d in datas}) == len(datas)


def test_random_bytes_are_refused_as_before() -> None:
    with pytest.raises(GovernanceError):
        decode_request(os.urandom(64))


def test_a_long_request_is_decoded_each_time_not_remembered() -> None:
    long = _request(7, "\U0001f600" * 1024)  # a 4 KiB description: bounded memory, not a memo entry
    data = long.encode()
    assert len(data) > request_memo.MAX_REMEMBERED_BYTES
    first, second = decode_request(data), decode_request(data)
    assert first == second == long and first is not second
    short = _request(8).encode()
    assert len(short) <= request_memo.MAX_REMEMBERED_BYTES
    assert decode_request(short) is decode_request(short)
