"""Review (issue 14, P1): one-time state cannot be duplicated in memory.

A copy of a fresh (or consumed, not yet signed) :class:`Presignature` could ``mark_used`` and
sign a second digest, and two shares of one presignature give ``(h - h') * phi_i``: the
signer's state, and with the other signers' shares the key (dkls23-notes 7.3). ``copy``,
``deepcopy`` and ``pickle`` are refused with :class:`UsageError`, as is copying a protocol
state machine mid-session (a copied PresignParty re-runs a round on the same secrets: a second
RVOLE reply under one session id is a two-time pad, notes section 4).
"""

from __future__ import annotations

import copy
import pickle

import pytest

from crypto_core.errors import UsageError
from crypto_core.rng import DeterministicRng
from crypto_core.sign import BatchConfig, PresignBatch, PresignParty, SignConfig

from .sign_util import keygen, presign

DUPLICATORS = [copy.copy, copy.deepcopy, pickle.dumps]


@pytest.mark.parametrize("dup", DUPLICATORS)
def test_a_presignature_cannot_be_duplicated(dup):
    keys = keygen(2, 3)
    pres = presign(keys, (1, 2), seed=b"dup")
    fresh, consumed = pres[1], pres[2]
    consumed.mark_used()
    for p in (fresh, consumed):
        with pytest.raises(UsageError, match="cannot be copied"):
            dup(p)
    assert fresh.to_bytes() and not fresh.used  # the refusal changed nothing


@pytest.mark.parametrize("dup", DUPLICATORS)
def test_a_signing_state_machine_cannot_be_duplicated(dup):
    keys = keygen(2, 3)
    single = PresignParty(keys[1], SignConfig(b"S" * 32, (1, 2)), DeterministicRng(b"s"))
    batch = PresignBatch(keys[1], BatchConfig(b"T" * 32, (1, 2), 2), DeterministicRng(b"t"))
    for party in (single, batch):
        party.start()
        with pytest.raises(UsageError, match="cannot be copied"):
            dup(party)
