"""Review of issue 14 (attacker): a corrupted signer that answers ``presig-unknown`` (or
``presig-used``) to every SignPresigned while its co-signers consume the same presignature and
answer their shares. Each time the presignature is discarded and the request pays an attempt
(bounded: one per request), and at its reconcile the node can disown its whole pool, so the
refiller has honest nodes presign again and again with it. An honest node says so once after a
restart (then it is reconciled and signs from its new pools); a node that keeps saying it with
no pool signature in between is disputed with the co-signers that held it (its word against
theirs, as a ban claim: an honest node that banned the co-signer deleted their presignatures),
so a node that keeps doing it with every partner ends up in no pool."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from coordinator.presigned import PRESIG_STRIKES

from .pool_util import cluster

DIGEST = hashlib.sha256(b"pay 1 coin").digest()


@pytest.mark.parametrize("kind", ["presig-unknown", "presig-used"])
def test_a_signer_that_keeps_disowning_presignatures_its_cosigners_hold_is_named(tmp_path: Path, kind: str) -> None:
    c = cluster(tmp_path)
    c.presign((1, 2), PRESIG_STRIKES + 2)
    c.presign((2, 3), 2, seed=b"other")
    c.stubs[2].refuse = kind
    c.nodes[3].healthy = False  # only {1, 2} is usable at first
    for n in range(PRESIG_STRIKES):
        assert c.pools.disputes(c.key.key_id) == frozenset()
        assert c.signing.sign(f"req-{n}", c.key, DIGEST, (), b"b") is None  # each still signs with the full protocol
    assert c.pools.disputes(c.key.key_id) == {frozenset({1, 2})}
    c.nodes[3].healthy = True
    assert c.signing.sign("req-x", c.key, DIGEST, (), b"b") is None  # on {2, 3} now: it disowns that one too
    assert c.pools.disputes(c.key.key_id) == {frozenset({1, 2}), frozenset({2, 3})}
    c.pools.housekeeping()
    assert c.db.ready_presigs() == [] and all(2 not in p[3] for _, p, _ in c.pools.due())


def test_an_honest_restart_is_forgiven_by_the_next_pool_signature(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    c.presign((1, 2), 2 * PRESIG_STRIKES + 2)
    for n in range(2 * PRESIG_STRIKES):
        c.stubs[2].refuse = "presig-unknown" if n % 2 == 0 else ""  # lost one, then signs again
        c.signing.sign(f"req-{n}", c.key, DIGEST, (), b"b")
    assert c.pools.disputes(c.key.key_id) == frozenset()


def test_a_refusal_no_cosigner_contradicts_names_nobody(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    c.presign((1, 2), PRESIG_STRIKES + 1)
    c.stubs[1].refuse = c.stubs[2].refuse = "presig-unknown"  # both lost it (e.g. both restarted): nobody to blame
    for n in range(PRESIG_STRIKES + 1):
        c.signing.sign(f"req-{n}", c.key, DIGEST, (), b"b")
    assert c.pools.disputes(c.key.key_id) == frozenset()
