"""Refresh and quorum change of FROST keys (crypto_core.frost.reshare; issue 16 item 5), both
groups, over random (t, n) -> (t', n') with roster indices: the group key is unchanged, every
t'-subset of the new shares interpolates to the same secret and no (t'-1)-subset or mix of epochs
does (test-only interpolation), the new shares sign with FROST (RFC 9591) and the signature
verifies, an old-epoch share in a new-epoch signing set is named by the share check; also the
configuration checks, a dealer restored from a backup, and the wire separation from the ECDSA
reshare."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
from dataclasses import dataclass

import pytest
from coincurve import PublicKeyXOnly
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings, strategies as st

from crypto_core.codec import HEADER_LEN, Protocol
from crypto_core.errors import ProtocolAbort, ShareInvalid, UsageError
from crypto_core.frost.keyshare import FrostKeyShare
from crypto_core.frost.local import run_frost_dkg
from crypto_core.frost.poly import interpolate_scalars
from crypto_core.frost.reshare import FrostReshareConfig, FrostReshareParty
from crypto_core.frost.scheme import group_for
from crypto_core.frost.signing import SigningPackage, aggregate, commit, sign_share, signing_key, verify_signature
from crypto_core.local import run
from crypto_core.rng import DeterministicRng
from crypto_core.session import Delivery

from ...conftest import scaled
from ...harness import run_collect
from .reshare_util import SCHEMES, SESSION, Epoch, dealer_keygen, mixed_sets, new_epoch, reshare_parties, secret_of

ROSTER = range(1, 13)


@dataclass(frozen=True)
class Change:
    scheme: str
    t: int
    committee: tuple[int, ...]
    dealers: tuple[int, ...]
    new_committee: tuple[int, ...]
    new_t: int
    refresh: bool


@st.composite
def changes(draw: st.DrawFn) -> Change:
    scheme = draw(st.sampled_from(SCHEMES))
    n = draw(st.integers(2, 5))
    t = draw(st.integers(2, n))
    committee = tuple(sorted(draw(st.sets(st.sampled_from(ROSTER[:7]), min_size=n, max_size=n))))
    if draw(st.booleans()):
        return Change(scheme, t, committee, committee, committee, t, refresh=True)
    dealers = tuple(sorted(draw(st.sets(st.sampled_from(committee), min_size=t, max_size=n))))
    n2 = draw(st.integers(2, 5))
    t2 = draw(st.integers(2, n2))
    kept = draw(st.sets(st.sampled_from(committee), max_size=min(n, n2)))
    outside = [r for r in ROSTER if r not in committee]
    newcomers = draw(st.lists(st.sampled_from(outside), unique=True, min_size=n2 - len(kept), max_size=n2 - len(kept)))
    return Change(scheme, t, committee, dealers, tuple(sorted(kept | set(newcomers))), t2, refresh=False)


def apply(change: Change, old: Epoch | None = None) -> tuple[Epoch, Epoch, dict[int, FrostReshareParty]]:
    if old is None:
        old = Epoch(change.committee, dealer_keygen(change.scheme, change.t, len(change.committee)))
    parties = reshare_parties(old, change.dealers, change.new_committee, change.new_t, refresh=change.refresh)
    run(parties)
    return old, new_epoch(parties, change.new_committee), parties


def interpolate(scheme: str, points: dict[int, int]) -> int:
    return interpolate_scalars(group_for(scheme), points)


def check_sharing(old: Epoch, new: Epoch) -> None:
    """The algebraic properties of the new epoch against the old one (reads secret shares)."""
    k0, t2, n2 = old.first, new.first.threshold, len(new.committee)
    g = group_for(k0.scheme)
    secret = secret_of(old)
    assert g.encode(g.base_mul(secret)) == k0.public_key
    for ks in new.shares.values():
        ks.validate()
        assert (ks.scheme, ks.public_key, ks.key_id, ks.key_label) == (k0.scheme, k0.public_key, k0.key_id, k0.key_label)
        assert (ks.epoch, ks.threshold, ks.parties) == (k0.epoch + 1, t2, n2)
        assert ks.sid_dkg != k0.sid_dkg and ks.sid_dkg == new.first.sid_dkg  # sid_dkg = sid_reshare
        assert ks.public_shares == new.first.public_shares
        assert FrostKeyShare.from_bytes(ks.to_bytes()).secret_share == ks.secret_share
    for subset in itertools.combinations(new.shares, t2):
        assert interpolate(k0.scheme, {x: new.shares[x].secret_share for x in subset}) == secret
    for subset in itertools.combinations(new.shares, t2 - 1):
        if len(subset) > 1:
            assert interpolate(k0.scheme, {x: new.shares[x].secret_share for x in subset}) != secret
    for points in mixed_sets(old, new, t2):
        assert interpolate(k0.scheme, points) != secret, sorted(points)


def frost_sign(
    shares: dict[int, FrostKeyShare], public: FrostKeyShare, signers: tuple[int, ...], message: bytes, root: bytes = b""
) -> bytes:
    """RFC 9591 signing by ``signers`` (share indices) with ``shares``; aggregated against
    ``public``'s public part (so an old-epoch share among new ones is caught)."""
    scheme = public.scheme
    rng = DeterministicRng(b"sign" + message)
    nonces, commitments = {}, []
    for i in signers:
        nonces[i], c = commit(scheme, shares[i].secret_share, rng, identifier=i)
        commitments.append(c)
    package = SigningPackage(scheme, message, tuple(commitments), root)
    z = {i: sign_share(shares[i], nonces[i], package) for i in signers}
    return aggregate(public.public(), package, z)


@given(changes(), st.data())
@settings(max_examples=scaled(12), deadline=None)
def test_a_change_keeps_the_key_reshares_the_secret_and_the_new_key_signs(change: Change, data: st.DataObject) -> None:
    old, new, parties = apply(change)
    check_sharing(old, new)
    for p, party in parties.items():
        assert party.done
        assert party.retired == (p not in change.new_committee)
        assert (party.result is None) == party.retired
    t2 = new.first.threshold
    signers = tuple(sorted(data.draw(st.sets(st.sampled_from(sorted(new.shares)), min_size=t2, max_size=t2))))
    pk = old.first.public_key
    root = b""
    if change.scheme == "ed25519":
        message = repr(change).encode()
        sig = frost_sign(new.shares, new.first, signers, message)
        Ed25519PublicKey.from_public_bytes(pk).verify(sig, message)  # OpenSSL; raises if invalid
    else:  # a 32-byte BIP340 message, with or without a Taproot script root
        message = hashlib.sha256(repr(change).encode()).digest()
        root = data.draw(st.sampled_from([b"", hashlib.sha256(message).digest()]))
        sig = frost_sign(new.shares, new.first, signers, message, root)
        assert PublicKeyXOnly(signing_key(change.scheme, pk, root)).verify(sig, message)  # libsecp256k1
    assert verify_signature(change.scheme, pk, message, sig, root)
    assert not verify_signature(change.scheme, pk, message[::-1], sig, root)  # negative control


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_old_epoch_share_in_a_new_epoch_signing_set_is_named(scheme: str) -> None:
    old, new, _ = apply(Change(scheme, 2, (2, 5, 7), (2, 5, 7), (2, 5, 7), 2, refresh=True))
    mixed = {1: old.shares[1], 2: new.shares[2]}  # share index 1 from epoch 0, 2 from epoch 1
    with pytest.raises(ShareInvalid) as e:
        frost_sign(mixed, new.first, (1, 2), b"mixed epochs")
    assert e.value.party == 1
    assert verify_signature(scheme, new.first.public_key, b"ok", frost_sign(new.shares, new.first, (1, 3), b"ok"))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_lifecycle_from_a_dkg_key_refresh_then_quorum_change_then_refresh(scheme: str) -> None:
    """A key from the FROST DKG: refresh, 2-of-3 -> 3-of-4 (one leaves, two join), refresh."""
    dkg = run_frost_dkg(scheme, 2, 3, DeterministicRng(b"dkg" + scheme.encode()), session=b"K" * 32, key_label=b"l")
    e0 = Epoch((1, 2, 3), {k.index: k for k in dkg})
    _, e1, _ = apply(Change(scheme, 2, (1, 2, 3), (1, 2, 3), (1, 2, 3), 2, refresh=True), e0)
    _, e2, parties = apply(Change(scheme, 2, (1, 2, 3), (1, 3), (1, 2, 4, 5), 3, refresh=False), e1)
    assert parties[3].retired and parties[3].result is None and parties[2].result is not None
    _, e3, _ = apply(Change(scheme, 3, (1, 2, 4, 5), (1, 2, 4, 5), (1, 2, 4, 5), 3, refresh=True), e2)
    assert [e.first.epoch for e in (e0, e1, e2, e3)] == [0, 1, 2, 3]
    assert secret_of(e3) == secret_of(e0) and e3.first.public_key == e0.first.public_key
    check_sharing(e2, e3)
    sig = frost_sign(e3.shares, e3.first, (1, 3, 4), b"after three changes")
    assert verify_signature(scheme, e0.first.public_key, b"after three changes", sig)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_dealer_restored_from_a_backup_deals(scheme: str) -> None:
    """A restored FROST share is a FrostKeyShare rebuilt from the public part and the recovered
    secret; its sid_dkg is not read (here: another value), and it deals like any other."""
    old = Epoch((2, 5, 7), dealer_keygen(scheme, 2, 3))
    restored = dataclasses.replace(old.shares[2], sid_dkg=b"\x42" * 32)
    old2 = Epoch(old.committee, {**old.shares, 2: restored})
    _, new, _ = apply(Change(scheme, 2, (2, 5, 7), (2, 5, 7), (2, 5, 7), 2, refresh=True), old2)
    assert secret_of(new) == secret_of(old)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_newcomer_without_the_old_public_shares_still_gets_a_share(scheme: str) -> None:
    old = Epoch((2, 5, 7), dealer_keygen(scheme, 2, 3))
    parties = reshare_parties(old, (2, 7), (2, 5, 8, 9), 3, give_old_shares=False)
    run(parties)
    new = new_epoch(parties, (2, 5, 8, 9))
    assert secret_of(new) == secret_of(old)


# configuration and API checks ---------------------------------------------------------------
def _cfg(scheme: str = "ed25519", kw: dict[str, object] | None = None) -> FrostReshareConfig:
    ks = dealer_keygen(scheme, 2, 3)
    base: dict[str, object] = dict(
        session=SESSION, index=1, dealers=((1, 1), (2, 2), (3, 3)), receivers=((1, 1), (2, 2), (3, 3)), old_threshold=2,
        new_threshold=2, scheme=scheme, public_key=ks[1].public_key, old_epoch=0, key_label=ks[1].key_label,
        refresh=True, old_public_shares=ks[1].public_shares,
    )
    base.update(kw or {})
    return FrostReshareConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change,field",
    [
        (dict(session=b"x" * 31), "session"),
        (dict(scheme="ecdsa-secp256k1"), "scheme"),
        (dict(scheme="ED25519"), "scheme"),
        (dict(public_key=b"\x01" + bytes(31)), "public_key"),
        (dict(public_key=b"\x02" * 33), "public_key"),
        (dict(old_public_shares=(b"\x01" + bytes(31),) * 3), "old_public_shares"),
        (dict(new_threshold=3), "refresh"),
        (dict(receivers=((1, 1), (2, 2), (3, 4))), "receivers"),
        (dict(dealers=((1, 1), (1, 2), (3, 3))), "dealers"),
        (dict(new_threshold=True), "new_threshold"),
        (dict(refresh=False, new_threshold=4), "new_threshold"),
        (dict(refresh=False, old_threshold=4), "dealers"),
        (dict(index=9), "index"),
        (dict(old_epoch=-1), "old_epoch"),
        (dict(key_label=b"x" * 257), "key_label"),
        (dict(old_public_shares=None), "refresh"),
        (dict(public_key="00" * 32), "public_key"),
        (dict(old_public_shares=("00" * 32,) * 3), "old_public_shares"),
    ],
)
def test_bad_configurations_are_refused_naming_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(UsageError, match=field):
        _cfg(kw=change)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_old_public_shares_of_another_key_are_refused(scheme: str) -> None:
    other = dealer_keygen(scheme, 2, 3, seed=b"other")
    with pytest.raises(UsageError, match="old_public_shares: do not interpolate"):
        _cfg(scheme, dict(old_public_shares=other[1].public_shares))


def test_a_dealer_needs_its_own_old_share_of_this_key() -> None:
    cfg = _cfg("ed25519")
    ks = dealer_keygen("ed25519", 2, 3)
    with pytest.raises(UsageError, match="old_share: a dealer needs"):
        FrostReshareParty(cfg, None)
    with pytest.raises(UsageError, match="index or threshold"):
        FrostReshareParty(cfg, ks[2])
    with pytest.raises(UsageError, match="epoch"):
        FrostReshareParty(cfg, dataclasses.replace(ks[1], epoch=3))
    with pytest.raises(UsageError, match="key label"):
        FrostReshareParty(cfg, dataclasses.replace(ks[1], key_label=b"other"))
    with pytest.raises(UsageError, match="another key"):
        FrostReshareParty(cfg, dealer_keygen("ed25519", 2, 3, seed=b"other")[1])
    with pytest.raises(UsageError, match="scheme"):
        FrostReshareParty(cfg, dealer_keygen("schnorr-secp256k1-bip340", 2, 3)[1])
    with pytest.raises(UsageError, match="invalid"):
        FrostReshareParty(cfg, dataclasses.replace(ks[1], secret_share=ks[1].secret_share + 1))
    new_only = _cfg("ed25519", dict(refresh=False, index=4, receivers=((1, 1), (2, 2), (4, 3))))
    with pytest.raises(UsageError, match="only dealers"):
        FrostReshareParty(new_only, ks[1])


def test_a_party_refuses_an_ecdsa_reshare_message_naming_the_sender() -> None:
    """Protocol id 5 in the header: a message of another protocol (here, RESHARE = 3) with the
    same session is malformed, its sender named."""
    parties = reshare_parties(Epoch((1, 2, 3), dealer_keygen("ed25519", 2, 3)), (1, 2, 3), (1, 2, 3), 2, refresh=True)
    outs = {i: p.start() for i, p in parties.items()}
    assert all(o.broadcast is not None and o.broadcast[1] == Protocol.FROST_RESHARE == 5 for o in outs.values())
    b2 = outs[2].broadcast
    assert b2 is not None
    forged = b2[:1] + bytes([Protocol.RESHARE]) + b2[2:]
    with pytest.raises(ProtocolAbort) as e:
        parties[1].receive({2: Delivery(forged), 3: Delivery(outs[3].broadcast)})
    assert e.value.party == 2 and "header.protocol" in str(e.value)
    with pytest.raises(UsageError):
        parties[1].receive({})  # dead after an abort


@pytest.mark.parametrize("scheme", SCHEMES)
def test_element_and_scalar_sizes_on_the_wire(scheme: str) -> None:
    """Round-2 broadcast of a 2-of-3 quorum change: echoes, t' elements, t' proofs, salt."""
    g = group_for(scheme)
    old = Epoch((1, 2, 3), dealer_keygen(scheme, 2, 3))
    out = run_collect(reshare_parties(old, (1, 2), (1, 2, 3), 3))
    assert not out.aborts and out.finished == {1, 2, 3}
    b = out.transcript[(2, 1, 2, "broadcast")]
    assert len(b) == HEADER_LEN + 3 * 32 + 3 * g.element_len + 3 * (g.element_len + g.scalar_len) + 32
    assert len(out.transcript[(2, 1, 3, "direct")]) == HEADER_LEN + g.scalar_len
    assert (2, 3, 1, "direct") not in out.transcript  # a receiver that is no dealer sends no direct part


@pytest.mark.parametrize("scheme", SCHEMES)
def test_secrets_are_wiped_at_the_end_and_after_an_abort_and_never_shown(scheme: str) -> None:
    old = Epoch((1, 2, 3), dealer_keygen(scheme, 2, 3))
    parties = reshare_parties(old, (1, 2, 3), (1, 2, 3), 2, refresh=True)
    with pytest.raises(UsageError):
        copy.copy(parties[1])
    run(parties)
    for p in parties.values():
        assert not any(name in p.__dict__ for name in FrostReshareParty.SECRETS)
        assert p.result is not None and hex(p.result.secret_share)[2:] not in repr(p) + repr(p.result)
    parties = reshare_parties(old, (1, 2, 3), (1, 2, 3), 2, refresh=True)
    outs = {i: p.start() for i, p in parties.items()}
    assert "_coeffs" in parties[1].__dict__ and "_old" in parties[1].__dict__
    with pytest.raises(ProtocolAbort):
        parties[1].receive({2: Delivery(outs[2].broadcast)})  # party 3's message is missing
    assert not any(name in parties[1].__dict__ for name in FrostReshareParty.SECRETS)
