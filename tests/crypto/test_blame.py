"""Blame never names an honest party (issue 8, item 7).

One party is corrupted. It runs the protocol code but rewrites any one of its outgoing parts
(any round, broadcast or direct, to one receiver or to all): it flips a bit anywhere, or copies
a stretch, or the whole body, of a message it can see in the same round (another party's
broadcast, or a direct part addressed to it: a rushing adversary). Every honest party that
aborts must name the corrupted party or nobody (``party=None``), never an honest party; honest
parties that finish agree on the result.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings, strategies as st

from crypto_core.codec import HEADER_LEN
from crypto_core.combiner import combine
from crypto_core.errors import ProtocolAbort
from crypto_core.local import route
from crypto_core.rng import DeterministicRng
from crypto_core.session import RoundOutput
from crypto_core.sign import PresignParty, SignConfig

from ..conftest import scaled
from .dkg_util import keygen, make_parties

DKG_PARTS = [(1, "broadcast"), (2, "broadcast"), (2, "direct"), (3, "broadcast"), (3, "direct"), (4, "broadcast"), (4, "direct")]
SIGN_PARTS = [(1, "broadcast"), (2, "direct"), (3, "broadcast"), (3, "direct")]
ACTIONS = ["flip", "copy", "copy", "replace_body"]


def _visible(outs: dict[int, RoundOutput], corrupt: int, source: int, part: str) -> bytes | None:
    """A part of ``source``'s output of this round that the corrupted party gets to see."""
    o = outs.get(source)
    if o is None:
        return None
    first = o.broadcast if part == "broadcast" else o.direct.get(corrupt)
    return first if first is not None else (o.broadcast or o.direct.get(corrupt))


def make_tamper(spec: dict[str, Any], corrupt: int, parties: list[int]):
    """The corrupted party's rewriting of its outgoing parts, as a ``route`` tamper hook.

    ``spec``: round, part, receiver (0 = every receiver, r = the r-th party in index order),
    action, pos, length, source (picks one of the other parties).
    """
    current: dict[str, dict[int, RoundOutput]] = {"outs": {}}
    others = [p for p in parties if p != corrupt]
    source = others[spec["source"] % len(others)]

    def tamper(r: int, j: int, k: int, p: str, data: bytes) -> bytes:
        if j != corrupt or (r, p) != (spec["round"], spec["part"]):
            return data
        if spec["receiver"] and k != parties[(spec["receiver"] - 1) % len(parties)]:
            return data
        action, pos = spec["action"], spec["pos"]
        if action == "flip":
            bit = pos % (8 * len(data))
            b = bytearray(data)
            b[bit // 8] ^= 1 << (bit % 8)
            return bytes(b)
        src = _visible(current["outs"], corrupt, source, p)
        if src is None:
            return data
        if action == "replace_body":  # another party's content under our own header
            return data[:HEADER_LEN] + src[HEADER_LEN:]
        start = HEADER_LEN + pos % max(1, min(len(data), len(src)) - HEADER_LEN)
        end = min(start + spec["length"], len(data), len(src))
        return data[:start] + src[start:end] + data[end:]

    return tamper, current


def drive(parties: dict[int, Any], corrupt: int, spec: dict[str, Any]) -> tuple[dict[int, ProtocolAbort], set[int]]:
    """Run to completion or to the first step in which an honest party aborts.

    The corrupted party's own errors (of any kind) only silence it. Returns the honest
    parties' aborts and the set of honest parties that finished.
    """
    tamper, current = make_tamper(spec, corrupt, sorted(parties))
    outs: dict[int, RoundOutput] = {}
    for i, p in parties.items():
        outs[i] = p.start()
    finished: set[int] = set()
    while outs:
        current["outs"] = outs
        inboxes = route(outs, tamper)
        nxt: dict[int, RoundOutput] = {}
        aborts: dict[int, ProtocolAbort] = {}
        for i, p in parties.items():
            if i not in inboxes or i not in outs:
                continue
            inbox = {j: d for j, d in inboxes[i].items() if j in outs}
            try:
                o = p.receive(inbox)
            except ProtocolAbort as e:
                if i != corrupt:
                    aborts[i] = e
                continue
            except Exception:
                if i != corrupt:
                    raise  # an honest party must never fail with anything but ProtocolAbort
                continue
            if o is None:
                if i != corrupt:
                    finished.add(i)
            else:
                nxt[i] = o
        if aborts:
            return aborts, finished
        outs = nxt
    return {}, finished


def assert_blame(aborts: dict[int, ProtocolAbort], corrupt: int) -> None:
    for i, e in aborts.items():
        assert e.party in (corrupt, None), f"honest party {i} named honest party {e.party}: {e}"


spec_strategy = st.fixed_dictionaries(
    {
        "action": st.sampled_from(ACTIONS),
        "pos": st.integers(0, 2**20),
        "length": st.sampled_from([1, 2, 8, 32, 33, 96, 4096]),
        "source": st.integers(0, 10),
        "receiver": st.integers(0, 4),  # 0: every receiver, else one receiver (equivocation)
    }
)


@settings(max_examples=scaled(10))
@given(corrupt=st.integers(1, 3), part=st.integers(0, len(DKG_PARTS) - 1), spec=spec_strategy)
def test_dkg_blame_never_names_an_honest_party(corrupt, part, spec):
    spec = {**spec, "round": DKG_PARTS[part][0], "part": DKG_PARTS[part][1]}
    parties = make_parties(2, 3, seed=b"blame")
    aborts, finished = drive(parties, corrupt, spec)
    assert_blame(aborts, corrupt)
    keys = {parties[i].result.public_key for i in finished}
    assert len(keys) <= 1
    for i in finished:
        parties[i].result.validate()


@settings(max_examples=scaled(25))
@given(corrupt_pos=st.integers(0, 2), part=st.integers(0, len(SIGN_PARTS) - 1), spec=spec_strategy)
def test_presign_blame_never_names_an_honest_party(corrupt_pos, part, spec):
    keys = keygen(3, 4)
    signers = (1, 2, 4)
    corrupt = signers[corrupt_pos]
    spec = {**spec, "round": SIGN_PARTS[part][0], "part": SIGN_PARTS[part][1]}
    session = b"B" * 32
    parties = {i: PresignParty(keys[i], SignConfig(session, signers), DeterministicRng(b"b" + bytes([i]))) for i in signers}
    aborts, finished = drive(parties, corrupt, spec)
    assert_blame(aborts, corrupt)
    if aborts or parties[corrupt].result is None:
        return
    # everyone has a presignature: the online round either signs correctly or aborts blaming
    # the corrupted party or nobody
    digest = bytes(range(32))
    shares = {}
    for i in signers:
        pre = parties[i].result
        pre.mark_used()
        shares[i] = pre.signature_share(digest, key_id=keys[i].key_id, epoch=keys[i].epoch)
    for i in finished:
        try:
            combine(shares, digest, signers=signers, public_key=keys[i].public_key, presignature=parties[i].result)
        except ProtocolAbort as e:
            assert e.party in (corrupt, None), e


def _flip_body_bit_to(receiver: int, rnd: int, part: str, offset: int = 0) -> dict[str, Any]:
    pos = 8 * (HEADER_LEN + offset)
    return {"round": rnd, "part": part, "action": "flip", "pos": pos, "length": 1, "source": 0, "receiver": receiver}


def test_dkg_equivocation_names_the_equivocator_or_nobody():
    """Node 1 sends node 2 another round-1 broadcast than node 3. Node 2 sees node 1's own echo
    contradict it and names node 1; node 3 sees node 2's echo disagree with its copy while node 1's
    agrees and cannot tell who lies: it names nobody (it used to name node 2)."""
    parties = make_parties(2, 3, seed=b"equivocate")
    aborts, _ = drive(parties, 1, _flip_body_bit_to(2, 1, "broadcast", offset=32))  # its sid_i
    assert {i: e.party for i, e in aborts.items()} == {2: 1, 3: None}, aborts
    assert "cannot tell which" in aborts[3].reason


def test_presign_equivocation_names_the_equivocator_or_nobody():
    keys = keygen(3, 4)
    signers = (1, 2, 4)
    parties = {i: PresignParty(keys[i], SignConfig(b"E" * 32, signers), DeterministicRng(b"e" + bytes([i]))) for i in signers}
    aborts, _ = drive(parties, 4, _flip_body_bit_to(2, 1, "broadcast"))  # its nonce, to party 2 only
    assert {i: e.party for i, e in aborts.items()} == {2: 4, 1: None}, aborts


def test_presign_split_inputs_name_nobody():
    """A compromised relay gives honest party 2 another derivation path for the same session.
    Everyone's round-1 view agrees, but party 2 hashes another signing session id: nobody can
    tell a lying party from one given other inputs, so every abort names nobody."""
    keys = keygen(3, 4)
    signers = (1, 2, 4)
    parties = {
        i: PresignParty(keys[i], SignConfig(b"D" * 32, signers, (7,) if i == 2 else ()), DeterministicRng(b"d" + bytes([i])))
        for i in signers
    }
    aborts, finished = drive(parties, 0, {"round": 0, "part": "", "action": "flip", "pos": 0, "length": 1, "source": 0, "receiver": 0})
    assert not finished
    assert set(aborts) == set(signers) and all(e.party is None for e in aborts.values()), aborts


def test_dkg_split_parameters_name_nobody():
    """A compromised relay asks honest party 2 for another threshold (or label) than the others.
    It used to be named for its 'malformed' Feldman vector or 'invalid' proofs; now every party
    sees the parameter digests differ in round 1 and names nobody."""
    from crypto_core.dkg import DkgConfig, DkgParty

    for t2, label2 in ((3, b"label"), (2, b"other label")):
        parties = {
            i: DkgParty(
                DkgConfig(b"S" * 32, t2 if i == 2 else 2, 3, i, label2 if i == 2 else b"label"), DeterministicRng(bytes([i]))
            )
            for i in (1, 2, 3)
        }
        aborts, finished = drive(parties, 0, {"round": 0, "part": "", "action": "flip", "pos": 0, "length": 1, "source": 0, "receiver": 0})
        assert not finished
        assert set(aborts) == {1, 2, 3} and all(e.party is None for e in aborts.values()), aborts
        assert all("other parameters" in e.reason for e in aborts.values())
