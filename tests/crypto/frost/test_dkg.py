"""The FROST DKG over both groups: agreement, correct sharing (t shares suffice, t-1 do not),
configuration checks and API misuse."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings, strategies as st

from crypto_core.codec import HEADER_LEN, Protocol
from crypto_core.errors import ProtocolAbort, UsageError
from crypto_core.frost.dkg import FrostDkgConfig, FrostDkgParty
from crypto_core.frost.keyshare import FrostKeyShare, frost_key_id
from crypto_core.frost.poly import interpolate_scalars
from crypto_core.frost.scheme import group_for
from crypto_core.local import run
from crypto_core.rng import DeterministicRng

from ...conftest import scaled
from ...harness import run_collect
from .frost_util import SCHEMES, keygen, make_parties


@st.composite
def tn(draw: st.DrawFn, max_n: int = 5) -> tuple[int, int]:
    n = draw(st.integers(2, max_n))
    return draw(st.integers(2, n)), n


def check_shares(shares: list[FrostKeyShare], scheme: str, t: int, n: int) -> None:
    group = group_for(scheme)
    assert [s.index for s in shares] == list(range(1, n + 1))
    first = shares[0]
    for s in shares:
        s.validate()
        assert (s.scheme, s.threshold, s.parties, s.epoch) == (scheme, t, n, 0)
        assert s.public_key == first.public_key and s.public_shares == first.public_shares
        assert s.sid_dkg == first.sid_dkg and s.key_id == first.key_id
        assert s.public() == first.public()
    assert first.key_id == frost_key_id(scheme, first.public_key)
    assert len(first.public_key) == group.element_len
    pk = group.decode(first.public_key, "pk")
    # any t shares interpolate to the secret key; t-1 shares give another value (test-only)
    for subset in itertools.islice(itertools.combinations(shares, t), 12):
        x = interpolate_scalars(group, {s.index: s.secret_share for s in subset})
        assert group.base_mul(x) == pk
    for subset in itertools.islice(itertools.combinations(shares, t - 1), 12):
        if len(subset) < 2:
            y = subset[0].secret_share
        else:
            y = interpolate_scalars(group, {s.index: s.secret_share for s in subset})
        assert group.base_mul(y) != pk


@settings(max_examples=scaled(6), deadline=None)
@given(scheme=st.sampled_from(SCHEMES), params=tn(), seed=st.binary(min_size=1, max_size=8))
def test_dkg_random_parameters(scheme: str, params: tuple[int, int], seed: bytes) -> None:
    t, n = params
    ps = make_parties(scheme, t, n, seed)
    run(ps)
    shares = []
    for p in ps.values():
        assert p.done and p.result is not None
        shares.append(p.result)
    check_shares(shares, scheme, t, n)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_messages_carry_the_frost_protocol_and_no_direct_parts_after_round_2(scheme: str) -> None:
    out = run_collect(make_parties(scheme, 2, 3))
    assert not out.aborts and out.finished == {1, 2, 3}
    for (rnd, _j, _k, part), data in out.transcript.items():
        assert data[1] == Protocol.FROST_DKG == 4
        assert data[2] == rnd
        assert part == "broadcast" or rnd == 2
    assert HEADER_LEN == 40


@pytest.mark.parametrize("scheme", SCHEMES)
def test_independent_runs_give_independent_keys(scheme: str) -> None:
    a = keygen(scheme, 2, 3, b"a")
    b = keygen(scheme, 2, 3, b"b")
    assert a[0].public_key != b[0].public_key and a[0].sid_dkg != b[0].sid_dkg


def test_same_randomness_other_scheme_is_another_key() -> None:
    ed = keygen("ed25519", 2, 3, b"same")
    bip = keygen("schnorr-secp256k1-bip340", 2, 3, b"same")
    assert ed[0].sid_dkg != bip[0].sid_dkg and ed[0].key_id != bip[0].key_id


def test_parties_disagreeing_on_the_scheme_abort_naming_nobody() -> None:
    ps = make_parties("ed25519", 2, 3)
    ps[3] = FrostDkgParty(FrostDkgConfig(b"S" * 32, 2, 3, 3, "schnorr-secp256k1-bip340", b"label"),
                          DeterministicRng(b"x"))
    out = run_collect(ps)
    assert out.aborts and all(e.party is None for e in out.aborts.values())
    assert all(p.result is None for p in ps.values())


def test_parties_disagreeing_on_the_label_abort_naming_nobody() -> None:
    ps = make_parties("ed25519", 2, 3)
    ps[2] = FrostDkgParty(FrostDkgConfig(b"S" * 32, 2, 3, 2, "ed25519", b"other"), DeterministicRng(b"x"))
    out = run_collect(ps)
    assert out.aborts and all(e.party is None and "cannot tell which" in e.reason for e in out.aborts.values())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 1, "parties": 3, "index": 1},
        {"threshold": 4, "parties": 3, "index": 1},
        {"threshold": 2, "parties": 3, "index": 0},
        {"threshold": 2, "parties": 3, "index": 4},
        {"threshold": 2, "parties": 1025, "index": 1},
        {"scheme": "ecdsa-secp256k1"},
        {"scheme": "ED25519"},
        {"scheme": ""},
        {"session": b"S" * 31},
        {"key_label": b"x" * 257},
    ],
)
def test_config_rejects_bad_parameters(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"session": b"S" * 32, "threshold": 2, "parties": 3, "index": 1, "scheme": "ed25519"}
    args.update(kwargs)
    with pytest.raises(UsageError):
        FrostDkgConfig(**args)  # type: ignore[arg-type]


def test_api_misuse_and_repr() -> None:
    p = make_parties("ed25519", 2, 2)[1]
    with pytest.raises(UsageError):
        p.receive({})
    p.start()
    with pytest.raises(UsageError):
        p.start()
    with pytest.raises(ProtocolAbort):
        p.receive({})  # no message from party 2
    with pytest.raises(UsageError):
        p.receive({})  # dead after the abort
    assert "_coeffs" not in p.__dict__ and "FrostDkgParty(index=1" in repr(p)
