"""The FROST DKG party fails closed: whatever a step raises, it is dead, its secrets (polynomial,
share) are gone, every later call raises UsageError, and it cannot be copied or pickled."""

from __future__ import annotations

import copy
import pickle

import pytest

import crypto_core.frost.dkg as dkg_mod
from crypto_core.errors import UsageError
from crypto_core.local import route

from .frost_util import SCHEMES, make_parties

ERRORS = [TypeError("boom"), ValueError("boom"), KeyboardInterrupt(), MemoryError()]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_dies_on_any_exception_mid_round(monkeypatch: pytest.MonkeyPatch, scheme: str, error: BaseException) -> None:
    parties = make_parties(scheme, 2, 3, b"fc")
    inboxes = route({i: p.start() for i, p in parties.items()})
    inboxes = route({i: p.receive(inboxes[i]) for i, p in parties.items()})
    victim = parties[1]
    assert hasattr(victim, "_coeffs")

    def broken(*args: object, **kwargs: object) -> object:  # after the share was computed
        assert hasattr(victim, "_share")
        raise error

    monkeypatch.setattr(dkg_mod.pok, "prove", broken)
    with pytest.raises(type(error)):
        victim.receive(inboxes[1])
    monkeypatch.undo()
    for name in victim.SECRETS:
        assert not hasattr(victim, name), name
    assert victim.result is None and "dead" in repr(victim)
    with pytest.raises(UsageError):
        victim.receive(inboxes[1])
    with pytest.raises(UsageError):
        victim.start()


def test_cannot_be_copied_or_pickled() -> None:
    p = make_parties("ed25519", 2, 2)[1]
    p.start()
    for dup in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(UsageError):
            dup(p)


def test_secrets_gone_after_success() -> None:
    parties = make_parties("schnorr-secp256k1-bip340", 2, 2, b"ok")
    outs = {i: p.start() for i, p in parties.items()}
    while outs:
        inboxes = route(outs)
        outs = {i: o for i, p in parties.items() if (o := p.receive(inboxes[i])) is not None}
    for p in parties.values():
        assert p.result is not None and p.done
        for name in p.SECRETS:
            assert not hasattr(p, name), name
