"""Tampering with any field of any FROST DKG message makes its receiver abort naming the sender
(or nobody where the evidence cannot prove who lied); never a key that differs between parties.

Field layouts (after the 40-byte header; E = element_len, S = 32-byte scalar):
round 1 B: config digest | sid_i | commitment to F_i; round 2 B: n echoes | t x F | t x proof
(E + S) | salt; round 2 D: share (S); round 3 B: n echoes | share proof (E + S); round 4 B:
n echoes | key digest.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from crypto_core import codec
from crypto_core.codec import HEADER_LEN
from crypto_core.errors import ProtocolAbort
from crypto_core.frost.dkg import FrostDkgParty
from crypto_core.frost.scheme import group_for

from ...conftest import scaled
from ...harness import flip_bit, run_collect
from .frost_util import SCHEMES, bad_elements, make_parties, non_canonical_scalar

PARTS = [(1, "broadcast"), (2, "broadcast"), (2, "direct"), (3, "broadcast"), (4, "broadcast")]
HEADER_FIELDS = [("version", 0, 1), ("protocol", 1, 1), ("round", 2, 1), ("kind", 3, 1), ("session", 4, 32),
                 ("sender", 36, 2), ("receiver", 38, 2)]


def fields(scheme: str, t: int, n: int, rnd: int, part: str) -> list[tuple[str, int, int]]:
    """(name, offset, length) of every field of a message, header included."""
    e = group_for(scheme).element_len
    body: list[tuple[str, int]]
    if (rnd, part) == (1, "broadcast"):
        body = [("config_digest", 32), ("sid", 32), ("commit_feldman", 32)]
    elif (rnd, part) == (2, "broadcast"):
        body = [(f"echo[{m}]", 32) for m in range(1, n + 1)] + [(f"feldman[{k}]", e) for k in range(t)]
        for k in range(t):
            body += [(f"proof[{k}].T", e), (f"proof[{k}].z", 32)]
        body += [("salt_feldman", 32)]
    elif (rnd, part) == (2, "direct"):
        body = [("share", 32)]
    elif (rnd, part) == (3, "broadcast"):
        body = [(f"echo[{m}]", 32) for m in range(1, n + 1)] + [("share_proof.T", e), ("share_proof.z", 32)]
    else:
        body = [(f"echo[{m}]", 32) for m in range(1, n + 1)] + [("key_digest", 32)]
    out = list(HEADER_FIELDS)
    pos = HEADER_LEN
    for name, ln in body:
        out.append((name, pos, ln))
        pos += ln
    return out


def assert_outcome(parties: dict[int, FrostDkgParty], aborts: dict[int, ProtocolAbort], sender: int, receiver: int) -> None:
    assert receiver in aborts, f"receiver {receiver} did not abort; aborts={aborts}"
    for i, e in aborts.items():
        assert parties[i].result is None
        if i == sender:  # the tampered sender is the corrupted party: what it concludes does not matter
            continue
        # an honest party names the sender, or nobody when two parties' words contradict each other
        if e.party is None:
            assert "cannot tell which" in e.reason, e
        else:
            assert e.party == sender, (i, e)
    keys = {(p.result.public_key, p.result.public_shares) for p in parties.values() if p.result is not None}
    assert len(keys) <= 1
    for p in parties.values():
        if p.result is not None:
            p.result.validate()


def run_tampered(scheme: str, t: int, n: int, rnd: int, part: str, sender: int, receiver: int, mutate, seed=b"t"):
    parties = make_parties(scheme, t, n, seed)

    def tamper(r: int, j: int, k: int, p: str, data: bytes) -> bytes:
        return mutate(data) if (r, j, k, p) == (rnd, sender, receiver, part) else data

    out = run_collect(parties, tamper)
    assert_outcome(parties, out.aborts, sender, receiver)
    return out


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("rnd,part", PARTS)
def test_every_field_of_every_message(scheme: str, rnd: int, part: str) -> None:
    """Flip the first and the last bit of every field of the message party 2 sends party 3."""
    t, n = 2, 3
    for name, off, ln in fields(scheme, t, n, rnd, part):
        for bit in (8 * off, 8 * (off + ln) - 1):
            out = run_tampered(scheme, t, n, rnd, part, 2, 3, flip_bit(bit))
            assert 3 in out.aborts, name


@pytest.mark.parametrize("scheme", SCHEMES)
def test_field_layout_matches_the_messages(scheme: str) -> None:
    out = run_collect(make_parties(scheme, 2, 3, b"t"))
    for rnd, part in PARTS:
        f = fields(scheme, 2, 3, rnd, part)
        assert len(out.transcript[(rnd, 2, 3, part)]) == f[-1][1] + f[-1][2]


@settings(max_examples=scaled(20), deadline=None)
@given(
    scheme=st.sampled_from(SCHEMES),
    n=st.integers(2, 4),
    part_index=st.integers(0, len(PARTS) - 1),
    mutation=st.sampled_from(["flip", "flip", "truncate", "extend", "other_session"]),
    pos=st.integers(0, 2**20),
    who=st.integers(0, 100),
)
def test_random_tampering_aborts_naming_the_sender(scheme, n, part_index, mutation, pos, who) -> None:
    rnd, part = PARTS[part_index]
    sender = 1 + who % n
    receiver = 1 + (sender + who // n) % n
    if receiver == sender:
        receiver = 1 + sender % n
    other = None
    if mutation == "other_session":
        other = run_collect(make_parties(scheme, 2, n, b"o", session=b"O" * 32)).transcript

    def mutate(data: bytes) -> bytes:
        if mutation == "flip":
            return flip_bit(pos)(data)
        if mutation == "truncate":
            return data[: pos % len(data)]
        if mutation == "extend":
            return data + bytes([pos % 256]) * (1 + pos % 40)
        assert other is not None
        return other[(rnd, sender, receiver, part)]

    run_tampered(scheme, 2, n, rnd, part, sender, receiver, mutate)


def _replace(off: int, new: bytes):
    return lambda data: data[:off] + new + data[off + len(new):]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_bad_elements_in_the_feldman_vector_and_proofs_name_the_sender(scheme: str) -> None:
    t, n = 2, 3
    e = group_for(scheme).element_len
    f2 = {name: off for name, off, _ in fields(scheme, t, n, 2, "broadcast")}
    f3 = {name: off for name, off, _ in fields(scheme, t, n, 3, "broadcast")}
    for what, enc in bad_elements(scheme).items():
        enc = enc[:e].ljust(e, b"\x00") if what == "short" else enc
        for rnd, off in ((2, f2["feldman[0]"]), (2, f2["feldman[1]"]), (2, f2["proof[0].T"]), (3, f3["share_proof.T"])):
            out = run_tampered(scheme, t, n, rnd, "broadcast", 2, 3, _replace(off, enc))
            assert out.aborts[3].party == 2, (what, rnd, off, out.aborts[3])


@pytest.mark.parametrize("scheme", SCHEMES)
def test_non_canonical_or_wrong_share_names_the_sender(scheme: str) -> None:
    group = group_for(scheme)
    off = HEADER_LEN
    out = run_tampered(scheme, 2, 3, 2, "direct", 2, 3, _replace(off, non_canonical_scalar(scheme)))
    assert out.aborts[3].party == 2 and "share" in out.aborts[3].reason

    def plus_one(data: bytes) -> bytes:
        k = group.decode_scalar(data[off:off + 32], "share")
        return data[:off] + group.encode_scalar((k + 1) % group.order)

    out = run_tampered(scheme, 2, 3, 2, "direct", 2, 3, plus_one)
    assert out.aborts[3].party == 2 and "Feldman commitment" in out.aborts[3].reason
    f = {name: off for name, off, _ in fields(scheme, 2, 3, 2, "broadcast")}
    out = run_tampered(scheme, 2, 3, 2, "broadcast", 2, 3, _replace(f["proof[1].z"], non_canonical_scalar(scheme)))
    assert out.aborts[3].party == 2


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("delta", [-1, 1])
def test_threshold_raising_feldman_vector_refused(scheme: str, delta: int) -> None:
    """A longer or shorter Feldman vector (raising or lowering t) is malformed: sender named."""
    e = group_for(scheme).element_len
    f = {name: off for name, off, _ in fields(scheme, 2, 3, 2, "broadcast")}

    def resize(data: bytes) -> bytes:
        at = f["feldman[1]"]
        return data[:at] + data[at:at + e] + data[at:] if delta > 0 else data[:at] + data[at + e:]

    out = run_tampered(scheme, 2, 3, 2, "broadcast", 2, 3, resize)
    assert out.aborts[3].party == 2


@pytest.mark.parametrize("scheme", SCHEMES)
def test_swapped_channels_blame_the_channel(scheme: str) -> None:
    """A message relayed on another party's channel names that channel's party (header.sender)."""
    parties = make_parties(scheme, 2, 3, b"s")
    seen: dict[tuple[int, int, int, str], bytes] = {}

    def tamper(r: int, j: int, k: int, p: str, data: bytes) -> bytes:
        seen[(r, j, k, p)] = data
        if (r, j, k, p) == (2, 2, 3, "broadcast") and (2, 1, 3, "broadcast") in seen:
            return seen[(2, 1, 3, "broadcast")]
        return data

    out = run_collect(parties, tamper)
    assert out.aborts[3].party == 2 and "header.sender" in out.aborts[3].reason


@pytest.mark.parametrize("scheme", SCHEMES)
def test_copied_contribution_never_blames_the_victim(scheme: str) -> None:
    """Party 2 replays party 1's round-1 broadcast with its own header: receivers name 2 (copied
    their own) or nobody (two peers agree), never 1."""
    parties = make_parties(scheme, 2, 3, b"c")
    seen: dict[tuple[int, int, int, str], bytes] = {}

    def tamper(r: int, j: int, k: int, p: str, data: bytes) -> bytes:
        seen[(r, j, k, p)] = data
        if r == 1 and j == 2:
            src = seen.get((1, 1, k, "broadcast")) or seen.get((1, 1, 2, "broadcast"))
            assert src is not None
            return data[:codec.HEADER_LEN] + src[codec.HEADER_LEN:]
        return data

    out = run_collect(parties, tamper)
    assert out.aborts
    for e in out.aborts.values():
        assert e.party in (2, None)
