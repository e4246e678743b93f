"""Review of issue 14 (attacker): a corrupted signer answering SignPresigned with a share that
does not decode or does not combine. The request must still be signable (the one-round step
falls back, never raises), the presignature must be discarded, and a share the coordinator can
prove bad (it does not decode on the signer's own channel) must name its node: the pools stop
putting that node in a signer set (else every request burns a presignature and an attempt on it)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from .pool_util import cluster

DIGEST = hashlib.sha256(b"pay 1 coin").digest()


def _tamper(c, monkeypatch: pytest.MonkeyPatch, node: int, how) -> None:  # type: ignore[no-untyped-def]
    real = c.stubs[node]._answer

    def answer(pid: bytes, share: bytes, replayed: bool):  # type: ignore[no-untyped-def]
        return real(pid, how(share), replayed)

    monkeypatch.setattr(c.stubs[node], "_answer", answer)


@pytest.mark.parametrize("how", [
    lambda s: s[:-1],  # one byte short: neither share layout
    lambda s: s[:-32] + b"\xff" * 32,  # w not a canonical scalar
    lambda s: b"",
])
def test_a_share_that_does_not_decode_falls_back_discards_and_names_the_node(tmp_path: Path, monkeypatch, how) -> None:  # type: ignore[no-untyped-def]
    c = cluster(tmp_path)
    rows = c.presign((1, 2), 2)
    _tamper(c, monkeypatch, 2, how)
    assert c.signing.sign("req-1", c.key, DIGEST, (), b"b") is None  # never raises: the full protocol signs
    assert c.db.presig_assigned_to("req-1") is None
    assert rows[0].presig_id not in {r.presig_id for r in c.db.ready_presigs()}
    assert frozenset({2}) in c.pools.disputes(c.key.key_id)  # proven bad on its own channel: named
    # no pool puts node 2 in a signer set again: its ready ones go, the refiller and the choice avoid it
    c.pools.housekeeping()
    assert c.db.ready_presigs() == []
    assert all(2 not in s for _, (_, _, _, s), _ in c.pools.due())
    assert c.pools.signing_sets(c.key, (1, 2, 3), set())[0] == (1, 3)


def test_a_share_that_decodes_but_does_not_combine_falls_back_and_discards(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    c = cluster(tmp_path)
    rows = c.presign((1, 2), 2)

    def flip(s: bytes) -> bytes:  # w + 1 (still canonical): the combined signature does not verify
        w = int.from_bytes(s[-32:], "big")
        return s[:-32] + (w + 1).to_bytes(32, "big")

    _tamper(c, monkeypatch, 2, flip)
    assert c.signing.sign("req-1", c.key, DIGEST, (), b"b") is None
    assert c.db.presig_assigned_to("req-1") is None
    assert rows[0].presig_id not in {r.presig_id for r in c.db.ready_presigs()}
    assert c.db.sign_attempts_taken("req-1") == 1
