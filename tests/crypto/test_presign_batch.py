"""Batch presigning (issue 14, piece P1): ``count`` presignatures in one three-round session."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings, strategies as st

from crypto_core.combiner import combine
from crypto_core.errors import ProtocolAbort, UsageError
from crypto_core.local import RunStats, run
from crypto_core.rng import DeterministicRng
from crypto_core.sign import MAX_PRESIGN_BATCH, BatchConfig, PresignBatch, batch_session

from ..conftest import scaled
from .sign_util import keygen
from .test_sign import check_signature

SESSION = b"B" * 32


def _batch(signers, count, path=(), seed=b"batch", tamper=None, t=2, n=3):  # type: ignore[no-untyped-def]
    keys = keygen(t, n)
    cfg = BatchConfig(SESSION, tuple(signers), count, tuple(path))
    ps = {i: PresignBatch(keys[i], cfg, DeterministicRng(seed + bytes([i]))) for i in signers}
    stats = RunStats()
    run(ps, tamper, stats)
    return keys, ps, stats


@settings(max_examples=scaled(3), deadline=None)
@given(st.sampled_from([(1, 2), (1, 3), (2, 3)]), st.integers(1, 3), st.lists(st.integers(0, 99), max_size=1).map(tuple))
def test_a_batch_makes_count_presignatures_that_each_sign_once(signers, count, path):
    keys, ps, stats = _batch(signers, count, path, seed=b"b" + bytes(signers) + bytes([count]) + bytes(path))
    assert stats.rounds == 3  # one round structure, whatever the count
    results = {i: p.results for i, p in ps.items()}
    assert all(r is not None and len(r) == count for r in results.values())
    sigids = [results[signers[0]][k].sigid for k in range(count)]  # type: ignore[index]
    assert len(set(sigids)) == count
    rs = set()
    for k in range(count):
        digest = hashlib.sha256(b"batch %d" % k).digest()
        shares = {}
        for i in signers:
            pre = results[i][k]  # type: ignore[index]
            assert (pre.sigid, pre.signers, pre.derivation_path, pre.epoch) == (sigids[k], tuple(signers), tuple(path), 0)
            pre.mark_used()
            shares[i] = pre.signature_share(digest, key_id=keys[i].key_id, epoch=0, derivation_path=path, rerandomize=True)
        pk = results[signers[0]][0].public_key  # type: ignore[index]
        sig = combine(shares, digest, signers=signers, public_key=pk, derivation_path=path)
        check_signature(sig, pk, digest)
        rs.add(sig.r)
    assert len(rs) == count


def test_instance_sessions_are_distinct_and_derived():
    ids = {batch_session(SESSION, k) for k in range(MAX_PRESIGN_BATCH)}
    assert len(ids) == MAX_PRESIGN_BATCH and SESSION not in ids
    assert batch_session(SESSION, 0) != batch_session(b"C" * 32, 0)
    for bad in (-1, MAX_PRESIGN_BATCH):
        with pytest.raises(UsageError, match="k: "):
            batch_session(SESSION, bad)


@pytest.mark.parametrize("count", [0, MAX_PRESIGN_BATCH + 1, True])
def test_batch_count_is_checked(count):
    with pytest.raises(UsageError, match="count: "):
        BatchConfig(SESSION, (1, 2), count)


def test_a_peer_that_sends_another_count_is_blamed_and_the_batch_dies():
    def tamper(rnd: int, sender: int, receiver: int, part: str, payload: bytes) -> bytes:
        if rnd == 2 and sender == 2 and receiver == 1:
            return payload[:40] + (1).to_bytes(2, "big") + payload[42:]
        return payload

    with pytest.raises(ProtocolAbort) as e:
        _batch((1, 2), 2, seed=b"count", tamper=tamper)
    assert e.value.party == 2 and "batch.count" in str(e.value)


def test_a_tampered_instance_aborts_the_whole_batch_and_wipes_every_instance():
    """Instance 1 of 2 gets a corrupted round-3 direct part from party 3: the instance's own
    checks abort naming party 3, and the batch (instance 0 included) is dead and wiped."""
    keys = keygen(2, 3)
    ps = {i: PresignBatch(keys[i], BatchConfig(SESSION, (1, 3), 2), DeterministicRng(b"w" + bytes([i]))) for i in (1, 3)}
    victim = ps[1]
    children = list(victim._parties)

    def tamper(rnd: int, sender: int, receiver: int, part: str, payload: bytes) -> bytes:
        if rnd == 3 and part == "direct" and sender == 3:
            return payload[:-40] + bytes([payload[-40] ^ 1]) + payload[-39:]  # inside the last instance's message
        return payload

    with pytest.raises(ProtocolAbort) as e:
        run(ps, tamper)
    assert e.value.party == 3
    assert victim.results is None and "_parties" not in victim.__dict__
    assert all(not {"_r", "_phi", "_sk"} & set(c.__dict__) for c in children)
    with pytest.raises(UsageError, match="aborted"):
        victim.receive({})
