"""Sessions fail closed (issue 8, item 6): whatever a step raises (a protocol abort, a bug such as
TypeError or ValueError, KeyboardInterrupt, MemoryError), the party is dead, its secrets are gone,
and every later call raises UsageError, so no round can run twice on the same secrets."""

from __future__ import annotations

import pytest

import crypto_core.dkg as dkg_mod
import crypto_core.sign as sign_mod
from crypto_core.errors import PresignatureUsed, UsageError
from crypto_core.local import route
from crypto_core.rng import DeterministicRng
from crypto_core.sign import PresignParty, SignConfig

from .dkg_util import keygen, make_parties
from .sign_util import presign

ERRORS = [TypeError("boom"), ValueError("boom"), KeyboardInterrupt(), MemoryError()]


def _assert_dead(party, inbox):
    for name in party.SECRETS:
        assert not hasattr(party, name), name
    assert party.result is None
    assert "dead" in repr(party)
    with pytest.raises(UsageError):
        party.receive(inbox)
    with pytest.raises(UsageError):
        party.start()


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_dkg_party_dies_on_any_exception_mid_round(monkeypatch, error):
    parties = make_parties(2, 3, seed=b"fc")
    inboxes = route({i: p.start() for i, p in parties.items()})
    inboxes = route({i: p.receive(inboxes[i]) for i, p in parties.items()})
    victim = parties[1]
    assert hasattr(victim, "_zero_mine") and hasattr(victim, "_coeffs")

    def broken(*args, **kwargs):  # raises after the share and zero seeds were computed
        assert hasattr(victim, "_share") and hasattr(victim, "_zero_seed")
        raise error

    monkeypatch.setattr(dkg_mod.base_ot, "sender_reply", broken)
    with pytest.raises(type(error)):
        victim.receive(inboxes[1])
    monkeypatch.undo()
    _assert_dead(victim, inboxes[1])  # the same inbox again: refused, not re-run


def test_dkg_party_dies_if_start_fails(monkeypatch):
    party = make_parties(2, 3, seed=b"fc")[1]

    def broken(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(dkg_mod, "commit", broken)
    with pytest.raises(ValueError):
        party.start()
    monkeypatch.undo()
    _assert_dead(party, {})


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_presign_party_dies_on_any_exception_mid_round(monkeypatch, error):
    keys = keygen(2, 3)
    signers = (1, 3)
    ps = {i: PresignParty(keys[i], SignConfig(b"F" * 32, signers), DeterministicRng(b"f" + bytes([i]))) for i in signers}
    inboxes = route({i: p.start() for i, p in ps.items()})
    inboxes = route({i: p.receive(inboxes[i]) for i, p in ps.items()})
    victim = ps[1]

    def broken(*args, **kwargs):  # raises after sk_i was derived, with Bob's RVOLE state alive
        assert hasattr(victim, "_sk") and hasattr(victim, "_bobs")
        raise error

    monkeypatch.setattr(sign_mod.rvole.RvoleAlice, "respond", staticmethod(broken))
    with pytest.raises(type(error)):
        victim.receive(inboxes[1])
    monkeypatch.undo()
    _assert_dead(victim, inboxes[1])


def test_presign_party_dies_on_a_bug_in_the_last_round(monkeypatch):
    keys = keygen(2, 3)
    signers = (2, 3)
    ps = {i: PresignParty(keys[i], SignConfig(b"G" * 32, signers), DeterministicRng(b"g" + bytes([i]))) for i in signers}
    inboxes = route({i: p.start() for i, p in ps.items()})
    inboxes = route({i: p.receive(inboxes[i]) for i, p in ps.items()})
    inboxes = route({i: p.receive(inboxes[i]) for i, p in ps.items()})
    victim = ps[2]

    def broken(points):
        raise TypeError("boom")

    monkeypatch.setattr(sign_mod, "point_sum", broken)
    with pytest.raises(TypeError):
        victim.receive(inboxes[2])
    monkeypatch.undo()
    _assert_dead(victim, inboxes[2])


@pytest.mark.parametrize(
    "bad",
    [{"digest": b"short"}, {"key_id": bytes(32)}, {"derivation_path": (5,)}, {"epoch": 1}, {"signers": (1, 3)}],
    ids=["digest", "key_id", "path", "epoch", "signers"],
)
def test_presignature_online_phase_fails_closed(bad):
    """Before mark_used() nothing is consumed; after it, the first call consumes the secret
    whatever its outcome: a refused call leaves nothing usable, and at most one share exists."""
    keys = keygen(2, 3)
    pre = presign(keys, (1, 2), session=b"H" * 32, seed=b"h")[1]
    args = {"digest": bytes(32), "key_id": keys[1].key_id, "epoch": keys[1].epoch, "derivation_path": ()}
    with pytest.raises(UsageError, match="mark_used"):  # not marked used yet: nothing consumed
        pre.signature_share(**args)
    assert pre._secret is not None and not pre.used
    pre.mark_used()
    with pytest.raises(UsageError, match="discarded"):
        pre.signature_share(**{**args, **bad})
    assert pre._secret is None
    with pytest.raises(PresignatureUsed):
        pre.signature_share(**args)
    with pytest.raises(PresignatureUsed):
        pre.mark_used()
