"""FROST signing API boundaries: nonce records, package validation, sign_share refusals, identifiable abort."""

from __future__ import annotations

import dataclasses

import pytest

from crypto_core.errors import DecodeError, ProtocolAbort, ShareInvalid, UsageError
from crypto_core.frost import FROST_SCHEMES, SCHEMES, ciphersuite_for
from crypto_core.frost.ciphersuite import SCHEME_BIP340, SCHEME_ED25519, SCHEME_RFC_SECP256K1, suite_for_signing
from crypto_core.frost.signing import (
    NONCES_MAGIC,
    SigningCommitment,
    SigningNonces,
    SigningPackage,
    aggregate,
    commit,
    sign_share,
    verify_share,
    verify_signature,
)
from crypto_core.rng import DeterministicRng

from .dealer import deal, round_one, run_signing

ALL = [SCHEME_ED25519, SCHEME_BIP340, SCHEME_RFC_SECP256K1]


def test_scheme_constants_and_suites() -> None:
    assert SCHEMES == ("ecdsa-secp256k1", "ed25519", "schnorr-secp256k1-bip340")
    assert FROST_SCHEMES == ("ed25519", "schnorr-secp256k1-bip340")
    assert ciphersuite_for("ed25519").context == b"FROST-ED25519-SHA512-v1"
    assert suite_for_signing(SCHEME_RFC_SECP256K1).context == b"FROST-secp256k1-SHA256-v1"
    assert ciphersuite_for(SCHEME_BIP340).context != suite_for_signing(SCHEME_RFC_SECP256K1).context
    for bad in ("ecdsa-secp256k1", SCHEME_RFC_SECP256K1, "", "ED25519"):
        with pytest.raises(UsageError, match="scheme"):
            ciphersuite_for(bad)


@pytest.mark.parametrize("scheme", ALL)
def test_nonces_never_printed_and_round_trip_strictly(scheme: str) -> None:
    key = deal(scheme, 2, 3, 1)
    nonces, comm = commit(scheme, key.shares[1].secret_share, DeterministicRng(b"n"), identifier=1)
    for text in (repr(nonces), str(nonces), repr((nonces, comm))):
        assert str(nonces.hiding) not in text and hex(nonces.hiding)[2:] not in text and "secret" in text
    data = nonces.to_bytes()
    assert data.startswith(NONCES_MAGIC) and len(data) == len(NONCES_MAGIC) + 65
    assert SigningNonces.from_bytes(data, scheme) == nonces
    q = suite_for_signing(scheme).group.order
    bad = [
        data[:-1],
        data + b"\x00",
        b"X" + data[1:],
        data[: len(NONCES_MAGIC)] + b"\x02" + data[len(NONCES_MAGIC) + 1 :],
        data[: len(NONCES_MAGIC) + 1] + q.to_bytes(32, "big") + data[-32:],
        data[: len(NONCES_MAGIC) + 1] + bytes(32) + data[-32:],
        data[:-32] + bytes(32),
    ]
    for b in bad:
        with pytest.raises(DecodeError) as e:
            SigningNonces.from_bytes(b, scheme)
        assert e.value.field == "nonces"
    with pytest.raises(UsageError, match="scheme"):
        SigningNonces.from_bytes(data, "ecdsa-secp256k1")


def test_commit_is_hedged_and_refuses_bad_shares() -> None:
    s = deal(SCHEME_ED25519, 2, 3, 2).shares[1].secret_share
    a, _ = commit(SCHEME_ED25519, s, DeterministicRng(b"x"))
    b, _ = commit(SCHEME_ED25519, s, DeterministicRng(b"x"))
    c, _ = commit(SCHEME_ED25519, s + 1, DeterministicRng(b"x"))
    d, _ = commit(SCHEME_ED25519, s, DeterministicRng(b"y"))
    assert a == b and a != c and a != d  # same randomness + share: same nonces; either changes them
    for bad in (0, -1, suite_for_signing(SCHEME_ED25519).group.order):
        with pytest.raises(UsageError, match="secret_share"):
            commit(SCHEME_ED25519, bad)
    with pytest.raises(UsageError, match="scheme"):
        commit("ecdsa-secp256k1", 5)


@pytest.mark.parametrize("scheme", ALL)
def test_package_refuses_malformed_commitment_lists(scheme: str) -> None:
    key = deal(scheme, 2, 4, 3)
    _, comms = round_one(key, [1, 2, 3])
    g = suite_for_signing(scheme).group
    identity = b"\x01" + bytes(31) if g.element_len == 32 else bytes(33)
    junk = b"\x02" + bytes(g.element_len - 1) if g.element_len == 33 else b"\xff" * 32
    c1, c2, c3 = comms
    cases: list[tuple[tuple[SigningCommitment, ...], type[Exception], str]] = [
        ((c1,), UsageError, "at least 2"),
        ((), UsageError, "at least 2"),
        ((c2, c1, c3), UsageError, r"commitments\[1\].identifier"),
        ((c1, c1, c3), UsageError, r"commitments\[1\].identifier"),
        ((dataclasses.replace(c1, identifier=0), c2), UsageError, r"commitments\[0\].identifier"),
        ((c1, dataclasses.replace(c2, hiding=identity)), DecodeError, r"commitments\[1\].hiding"),
        ((c1, dataclasses.replace(c2, binding=identity)), DecodeError, r"commitments\[1\].binding"),
        ((c1, dataclasses.replace(c2, binding=junk)), DecodeError, r"commitments\[1\].binding"),
        ((dataclasses.replace(c1, hiding=c1.hiding[:-1]), c2), DecodeError, r"commitments\[0\].hiding"),
    ]
    for commitments, exc, match in cases:
        with pytest.raises(exc, match=match):
            SigningPackage(scheme, b"msg", commitments)
    with pytest.raises(UsageError, match="commitments"):
        SigningPackage(scheme, b"msg", [c1, c2])  # type: ignore[arg-type]
    if scheme == SCHEME_BIP340:
        SigningPackage(scheme, b"m", (c1, c2), bytes(32))
        with pytest.raises(UsageError, match="taproot_root"):
            SigningPackage(scheme, b"m", (c1, c2), bytes(31))
    else:
        with pytest.raises(UsageError, match="taproot_root"):
            SigningPackage(scheme, b"m", (c1, c2), bytes(32))
    with pytest.raises(UsageError, match="scheme"):
        SigningPackage("ecdsa-secp256k1", b"m", (c1, c2))


@pytest.mark.parametrize("scheme", ALL)
def test_sign_share_refuses_a_package_that_does_not_hold_its_own_commitment(scheme: str) -> None:
    key = deal(scheme, 2, 4, 4)
    nonces, comms = round_one(key, [1, 2, 3])
    pkg = SigningPackage(scheme, b"m", comms)
    sign_share(key.shares[1], nonces[1], pkg)  # the honest case works
    with pytest.raises(UsageError, match=r"no commitment of this signer \(4\)"):
        sign_share(key.shares[4], nonces[1], pkg)
    # own entry with another binding (or hiding) commitment, or nonces of another signer
    other, _ = commit(scheme, key.shares[1].secret_share, DeterministicRng(b"other"))
    for bad in (SigningNonces(nonces[1].hiding, other.binding), SigningNonces(other.hiding, nonces[1].binding), nonces[2]):
        with pytest.raises(UsageError, match=r"commitment is not the one of its nonces"):
            sign_share(key.shares[1], bad, pkg)
    swapped = (dataclasses.replace(comms[0], hiding=comms[0].binding, binding=comms[0].hiding),) + comms[1:]
    with pytest.raises(UsageError, match="not the one of its nonces"):
        sign_share(key.shares[1], nonces[1], SigningPackage(scheme, b"m", swapped))


def test_sign_share_refuses_key_and_package_that_disagree() -> None:
    key = deal(SCHEME_ED25519, 3, 4, 5)
    nonces, comms = round_one(key, [1, 2])
    with pytest.raises(UsageError, match="the key needs 3"):
        sign_share(key.shares[1], nonces[1], SigningPackage(SCHEME_ED25519, b"m", comms))
    other = deal(SCHEME_BIP340, 2, 4, 5)
    n2, c2 = round_one(other, [1, 2])
    with pytest.raises(UsageError, match="scheme"):
        sign_share(key.shares[1], n2[1], SigningPackage(SCHEME_BIP340, b"m", c2))
    small = deal(SCHEME_ED25519, 2, 2, 6)
    n3, c3 = round_one(deal(SCHEME_ED25519, 2, 5, 6), [1, 5])
    with pytest.raises(UsageError, match="beyond the key's parties"):
        sign_share(small.shares[1], n3[1], SigningPackage(SCHEME_ED25519, b"m", c3))


@pytest.mark.parametrize("scheme", ALL)
def test_aggregate_names_a_missing_share_and_refuses_strangers(scheme: str) -> None:
    key = deal(scheme, 2, 4, 7)
    pkg, shares, sig = run_signing(key, [2, 4], b"hello")
    assert verify_signature(scheme, key.public_key, b"hello", sig)
    with pytest.raises(ShareInvalid, match="no signature share") as e:
        aggregate(key.public, pkg, {2: shares[2]})
    assert e.value.party == 4 and isinstance(e.value, ProtocolAbort)
    with pytest.raises(UsageError, match="non-signers"):
        aggregate(key.public, pkg, {**shares, 3: shares[2]})
    with pytest.raises(UsageError, match="not a signer"):
        verify_share(key.public, pkg, 3, shares[2])
    for bad in (b"", shares[2][:-1], shares[2] + b"\x00", b"\xff" * 32):
        with pytest.raises(ShareInvalid, match="does not decode") as e:
            verify_share(key.public, pkg, 2, bad)
        assert e.value.party == 2


def test_verify_signature_bounds() -> None:
    key = deal(SCHEME_ED25519, 2, 3, 8)
    _, _, sig = run_signing(key, [1, 2], b"")
    assert verify_signature(SCHEME_ED25519, key.public_key, b"", sig)  # the empty message is a message
    assert not verify_signature(SCHEME_ED25519, key.public_key, b"", sig + b"\x00")
    with pytest.raises(DecodeError):
        verify_signature(SCHEME_ED25519, key.public_key[:-1], b"", sig)
    with pytest.raises(UsageError, match="scheme"):
        verify_signature("ecdsa-secp256k1", key.public_key, b"", sig)
