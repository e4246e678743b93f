"""Hash commitments ``Com(msg) = H("commit"; purpose, sid, sender, salt, msg)`` (notes 1.3)."""

from __future__ import annotations

import hmac

from .rng import Rng
from .tags import Tag
from .transcript import hash32, u16

SALT_LEN = 32


def commit_with_salt(purpose: Tag, sid: bytes, sender: int, msg: bytes, salt: bytes) -> bytes:
    return hash32(Tag.COMMIT, purpose.bytes, sid, u16(sender), salt, msg)


def commit(purpose: Tag, sid: bytes, sender: int, msg: bytes, rng: Rng) -> tuple[bytes, bytes]:
    """Return ``(commitment, salt)``; the salt is 32 fresh random bytes (2*lambda bits)."""
    salt = rng.bytes(SALT_LEN)
    return commit_with_salt(purpose, sid, sender, msg, salt), salt


def opens(purpose: Tag, sid: bytes, sender: int, msg: bytes, salt: bytes, commitment: bytes) -> bool:
    """Constant-time check that ``(msg, salt)`` opens ``commitment``."""
    return hmac.compare_digest(commit_with_salt(purpose, sid, sender, msg, salt), commitment)
