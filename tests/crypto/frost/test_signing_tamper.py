"""Tampering with every field of the signing package and with every share: identifiable abort.

A corrupted signer (or a coordinator that shows one signer a different package) makes that
signer's share fail :func:`verify_share`, which names it (:class:`ShareInvalid`, ``party``); the
other signers' shares still verify; :func:`aggregate` raises naming it and never returns a
signature. A coordinator that aggregates against a package other than the one signed gets an
abort, never a wrong signature.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

from crypto_core.errors import ShareInvalid, UsageError
from crypto_core.frost.ciphersuite import SCHEME_BIP340, SCHEME_ED25519, suite_for_signing
from crypto_core.frost.signing import SigningCommitment, SigningPackage, aggregate, commit, sign_share, verify_share, verify_signature
from crypto_core.rng import DeterministicRng

from ...conftest import scaled
from .dealer import DealtKey, deal, round_one

SIGNERS = [1, 3, 4]
CASES = [(SCHEME_ED25519, b""), (SCHEME_BIP340, b""), (SCHEME_BIP340, b"\x5a" * 32)]
MESSAGE = b"\x11" * 32


def _setup(scheme: str, root: bytes) -> tuple[DealtKey, dict, SigningPackage, dict[int, bytes]]:  # type: ignore[type-arg]
    key = deal(scheme, 2, 5, 99)
    nonces, comms = round_one(key, SIGNERS)
    pkg = SigningPackage(scheme, MESSAGE, comms, root)
    shares = {i: sign_share(key.shares[i], nonces[i], pkg) for i in SIGNERS}
    return key, nonces, pkg, shares


def _point(scheme: str, k: int) -> bytes:
    g = suite_for_signing(scheme).group
    return g.encode(g.base_mul(k))


def _views(scheme: str, root: bytes, pkg: SigningPackage, j: int) -> dict[str, SigningPackage]:
    """Packages that differ from ``pkg`` in one field, each still holding signer ``j``'s own commitment."""
    others = [c for c in pkg.commitments if c.identifier != j]
    k = others[0]
    out: dict[str, SigningPackage] = {
        "message byte": dataclasses.replace(pkg, message=bytes([pkg.message[0] ^ 1]) + pkg.message[1:]),
        "message longer": dataclasses.replace(pkg, message=pkg.message + b"\x00"),
    }
    for field in ("hiding", "binding"):
        changed = dataclasses.replace(k, **{field: _point(scheme, 7)})
        out[f"other's {field}"] = dataclasses.replace(pkg, commitments=tuple(changed if c is k else c for c in pkg.commitments))
    moved = dataclasses.replace(k, identifier=2 if k.identifier != 2 else 5)
    if moved.identifier not in pkg.identifiers:
        moved_list = sorted([moved, *(c for c in pkg.commitments if c is not k)], key=lambda c: c.identifier)
        out["other's identifier"] = dataclasses.replace(pkg, commitments=tuple(moved_list))
    out["other dropped"] = dataclasses.replace(pkg, commitments=tuple(c for c in pkg.commitments if c is not k))
    extra = SigningCommitment(5, _point(scheme, 11), _point(scheme, 12))
    if 5 not in pkg.identifiers:
        out["extra signer"] = dataclasses.replace(pkg, commitments=(*pkg.commitments, extra))
    if scheme == SCHEME_BIP340:
        out["taproot root"] = dataclasses.replace(pkg, taproot_root=b"" if pkg.taproot_root else b"\x01" * 32)
        if pkg.taproot_root:
            out["taproot root byte"] = dataclasses.replace(pkg, taproot_root=b"\x5b" + pkg.taproot_root[1:])
    return out


def _expect_named(key: DealtKey, pkg: SigningPackage, shares: dict[int, bytes], j: int) -> None:
    with pytest.raises(ShareInvalid) as e:
        verify_share(key.public, pkg, j, shares[j])
    assert e.value.party == j
    for i in pkg.identifiers:
        if i != j:
            verify_share(key.public, pkg, i, shares[i])
    with pytest.raises(ShareInvalid) as e:
        aggregate(key.public, pkg, shares)
    assert e.value.party == j


@pytest.mark.parametrize(("scheme", "root"), CASES, ids=["ed25519", "bip340", "bip340-root"])
@pytest.mark.parametrize("j", SIGNERS)
def test_a_signer_shown_another_package_is_named(scheme: str, root: bytes, j: int) -> None:
    key, nonces, pkg, shares = _setup(scheme, root)
    views = _views(scheme, root, pkg, j)
    assert len(views) >= 6
    for name, view in views.items():
        bad = dict(shares)
        bad[j] = sign_share(key.shares[j], nonces[j], view)
        assert bad[j] != shares[j], name
        _expect_named(key, pkg, bad, j)


@pytest.mark.parametrize(("scheme", "root"), CASES, ids=["ed25519", "bip340", "bip340-root"])
@pytest.mark.parametrize("j", SIGNERS)
def test_a_corrupted_signer_is_named(scheme: str, root: bytes, j: int) -> None:
    key, nonces, pkg, shares = _setup(scheme, root)
    g = suite_for_signing(scheme).group
    z = g.decode_scalar(shares[j])
    wrong_secret = dataclasses.replace(key.shares[j], secret_share=(key.shares[j].secret_share + 1) % g.order)
    # nonces other than the committed ones: the signer equivocates its own commitment
    other_nonces, other_comm = commit(scheme, key.shares[j].secret_share, DeterministicRng(b"equivocate"), identifier=j)
    equivocal = dataclasses.replace(pkg, commitments=tuple(other_comm if c.identifier == j else c for c in pkg.commitments))
    forged: dict[str, bytes] = {
        "z + 1": g.encode_scalar((z + 1) % g.order),
        "z - 1": g.encode_scalar((z - 1) % g.order),
        "-z": g.encode_scalar(-z % g.order),
        "zero": g.encode_scalar(0),
        "another signer's share": shares[next(i for i in SIGNERS if i != j)],
        "wrong secret share": sign_share(wrong_secret, nonces[j], pkg),
        "other nonces": sign_share(key.shares[j], other_nonces, equivocal),
    }
    for name, share in forged.items():
        assert share != shares[j], name
        _expect_named(key, pkg, {**shares, j: share}, j)
    for undecodable in (shares[j][:-1], shares[j] + b"\x00", g.order.to_bytes(32, "little" if g.element_len == 32 else "big"), b""):
        with pytest.raises(ShareInvalid, match="does not decode") as e:
            aggregate(key.public, pkg, {**shares, j: undecodable})
        assert e.value.party == j


@pytest.mark.parametrize(("scheme", "root"), CASES, ids=["ed25519", "bip340", "bip340-root"])
@settings(max_examples=scaled(20), deadline=None)
@given(j=st.sampled_from(SIGNERS), pos=st.integers(0, 31), mask=st.integers(1, 255))
def test_any_changed_share_byte_is_named(scheme: str, root: bytes, j: int, pos: int, mask: int) -> None:
    key, _, pkg, shares = _setup(scheme, root)
    bad = bytearray(shares[j])
    bad[pos] ^= mask
    with pytest.raises(ShareInvalid) as e:
        aggregate(key.public, pkg, {**shares, j: bytes(bad)})
    assert e.value.party == j


@pytest.mark.parametrize(("scheme", "root"), CASES, ids=["ed25519", "bip340", "bip340-root"])
def test_aggregating_against_another_package_aborts_never_a_wrong_signature(scheme: str, root: bytes) -> None:
    key, _, pkg, shares = _setup(scheme, root)
    sig = aggregate(key.public, pkg, shares)
    assert verify_signature(scheme, key.public_key, MESSAGE, sig, root)
    for j in SIGNERS:
        for name, view in _views(scheme, root, pkg, j).items():
            try:
                aggregate(key.public, view, {i: s for i, s in shares.items() if i in view.identifiers})
            except (ShareInvalid, UsageError):
                continue
            pytest.fail(f"aggregate returned a signature for a package with a changed {name}")
