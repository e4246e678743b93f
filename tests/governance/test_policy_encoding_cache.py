"""Issue 14 (coordinator CPU): a :class:`governance.policy.KeyPolicy` computes its canonical
encoding once; the cached bytes are what a fresh computation gives, equality and hashing still
follow the fields, and a changed copy (``dataclasses.replace``) gets its own encoding."""

from __future__ import annotations

import copy
import dataclasses
import hashlib

from governance.policy import KeyPolicy, RateLimit

from .gov_util import policy


def test_the_cached_encoding_is_the_encoding() -> None:
    p = policy()
    first = p.encode()
    assert p.encode() is first and first == p._encode()
    assert p.digest() == hashlib.sha256(first).digest()
    fresh = KeyPolicy(p.version, dict(p.approvers), p.approval_quorum, frozenset(set(p.requesters)), p.ttl_seconds, p.rate_limit)
    assert fresh == p and hash(fresh) == hash(p) and fresh.encode() == first  # the cache is no field
    assert repr(fresh) == repr(p)


def test_a_changed_copy_and_a_pickled_copy_encode_their_own_fields() -> None:
    p = policy()
    p.digest()
    for changed in (dataclasses.replace(p, version=p.version + 1), dataclasses.replace(p, rate_limit=RateLimit(7, 60)),
                    dataclasses.replace(p, approval_quorum=1)):
        assert changed.encode() == changed._encode() != p.encode()
        assert changed.digest() != p.digest()
    back = copy.copy(p)
    assert back == p and back.encode() == p._encode()
