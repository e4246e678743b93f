"""Reservation receipts: canonical encoding, signing and the signer-side quorum check."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, strategies as st

from governance.encoding import Encoder
from governance.errors import GovernanceError
from governance.reservation import (
    MAX_SIGN_ATTEMPTS,
    RECEIPT_TAG,
    Reservation,
    ReservationReceipt,
    reservation_quorum,
    sign_reservation,
    verify_receipts,
)

from .gov_util import KEY_ID, OTHER_KEY_ID, raw

ROOT = hashlib.sha256(b"root").digest()
NODE_KEYS = {i: Ed25519PrivateKey.generate() for i in range(1, 5)}
ROSTER = {i: raw(k) for i, k in NODE_KEYS.items()}
SID = hashlib.sha256(b"session").digest()
RDIGEST = hashlib.sha256(b"request").digest()


def reservation(**kw: object) -> Reservation:
    base: dict[str, object] = dict(
        governance_root=ROOT, key_id=KEY_ID, request_id="req-1", request_digest=RDIGEST, attempt=1, signers=(1, 2),
        session_id=SID,
    )
    base.update(kw)
    return Reservation(**base)  # type: ignore[arg-type]


def receipts(res: Reservation, *nodes: int) -> list[bytes]:
    return [sign_reservation(res, i, NODE_KEYS[i]).to_bytes() for i in nodes]


def test_quorum_is_a_strict_majority() -> None:
    assert [reservation_quorum(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [1, 2, 2, 3, 3, 4, 4]
    for n in range(1, 40):
        q = reservation_quorum(n)
        assert 2 * q > n and 2 * (q - 1) <= n  # two quorums always intersect; q is the smallest such
    with pytest.raises(GovernanceError, match="^parties"):
        reservation_quorum(0)


def test_receipt_roundtrip_and_verification() -> None:
    res = reservation()
    r = sign_reservation(res, 3, NODE_KEYS[3])
    again = ReservationReceipt.from_bytes(r.to_bytes())
    assert again == r and again.reservation.encode() == res.encode()
    assert again.verify(ROSTER[3]) and not again.verify(ROSTER[2])
    assert Reservation.decode(res.encode()) == res
    assert r.to_bytes().startswith(Encoder(RECEIPT_TAG).finish())  # tagged, length-prefixed
    assert verify_receipts(receipts(res, 1, 2, 4), res, ROSTER, 3) == frozenset({1, 2, 4})


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        (dict(governance_root=b"\x00" * 31), "governance_root"),
        (dict(key_id=b""), "key_id"),
        (dict(request_id="bad id"), "request_id"),
        (dict(request_digest=b"\x01" * 33), "request_digest"),
        (dict(attempt=0), "attempt"),
        (dict(attempt=MAX_SIGN_ATTEMPTS + 1), "attempt"),
        (dict(signers=()), "signers"),
        (dict(signers=(2, 1)), "signers"),
        (dict(signers=(1, 1)), "signers"),
        (dict(signers=(0, 1)), "signers[0]"),
        (dict(session_id=b"x"), "session_id"),
    ],
)
def test_reservation_fields_are_checked(kw: dict[str, object], field: str) -> None:
    with pytest.raises(GovernanceError) as e:
        reservation(**kw)
    assert e.value.field == field


def test_every_field_is_bound() -> None:
    """A receipt for anything else (cluster, key, request, request version, attempt, signer set,
    session) does not count, and the error names the field."""
    res = reservation()
    others = {
        "governance_root": hashlib.sha256(b"other root").digest(),
        "key_id": OTHER_KEY_ID,
        "request_id": "req-2",
        "request_digest": hashlib.sha256(b"other").digest(),
        "attempt": 2,
        "signers": (1, 3),
        "session_id": hashlib.sha256(b"other session").digest(),
    }
    for name, value in others.items():
        foreign = dataclasses.replace(res, **{name: value})
        assert foreign.encode() != res.encode()
        with pytest.raises(GovernanceError) as e:
            verify_receipts(receipts(res, 1, 2) + receipts(foreign, 3), res, ROSTER, 3)
        assert e.value.field == f"reservation_receipts[2].reservation.{name}", name


def test_forged_duplicated_foreign_and_too_few_receipts_are_refused() -> None:
    res = reservation()
    good = receipts(res, 1, 2, 3)

    def refused(rs: list[bytes], field: str, text: str = "") -> None:
        with pytest.raises(GovernanceError) as e:
            verify_receipts(rs, res, ROSTER, 3)
        assert e.value.field == field and text in e.value.reason, (e.value.field, e.value.reason)

    refused(good[:2], "reservation_receipts", "2 valid receipt(s) from distinct nodes, 3 required")
    refused([], "reservation_receipts", "0 valid receipt(s)")
    refused(good[:2] + good[:1], "reservation_receipts[2].reserver", "a second receipt from node 1")
    outsider = Ed25519PrivateKey.generate()
    refused(good[:2] + [sign_reservation(res, 3, outsider).to_bytes()], "reservation_receipts[2].signature", "node 3")
    refused(good[:2] + [sign_reservation(res, 9, outsider).to_bytes()], "reservation_receipts[2].reserver", "not in this node's roster")
    # node 4 signs but claims to be node 3
    refused(good[:2] + [sign_reservation(res, 3, NODE_KEYS[4]).to_bytes()], "reservation_receipts[2].signature")
    # a receipt with its reserver index changed after signing
    moved = ReservationReceipt(res, 4, ReservationReceipt.from_bytes(good[2]).signature).to_bytes()
    refused(good[:2] + [moved], "reservation_receipts[2].signature")
    refused(good[:2] + [b"\x00" * 20], "reservation_receipts[2].tag")
    refused(good[:2] + [good[2] + b"\x00"], "reservation_receipts[2].encoding", "trailing")
    refused(good[:2] + [good[2][:-1]], "reservation_receipts[2].signature", "truncated")


@given(st.binary(max_size=400))
def test_decoding_garbage_raises_only_governance_errors(data: bytes) -> None:
    try:
        ReservationReceipt.from_bytes(data)
    except GovernanceError:
        pass


@given(st.integers(0, 2**16 - 1), st.integers(1, 400))
def test_a_flipped_bit_never_verifies(pos: int, bit: int) -> None:
    res = reservation(attempt=2, signers=(1, 3, 4))
    data = bytearray(receipts(res, 2)[0])
    data[pos % len(data)] ^= 1 << (bit % 8)
    try:
        verify_receipts([bytes(data)], res, ROSTER, 1)
    except GovernanceError:
        return
    raise AssertionError("an altered receipt verified")
