"""A deterministic little cluster for the backup tests: fixed admin, node and officer keys, a real
DKG (tests/crypto/dkg_util.py), a two-version roster history and a signed recovery configuration.

Every key is derived from a fixed seed (never use them for anything real), so the golden bundle
(tests/backup/vectors/bundle-v1.bin) can be checked by rebuilding the same world.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from crypto_core.frost.keyshare import FrostKeyShare
from crypto_core.keyshare import KeyShare
from crypto_core.rng import DeterministicRng
from governance.policy import AdminSet
from governance.recovery import (
    BackupBundle,
    BackupKey,
    Officer,
    RecoveryConfig,
    RecoveryConfigChange,
    SignedBackupPart,
    SignedRecoveryConfigChange,
    sign_recovery_config_change,
)
from governance.roster import Roster, RosterChange, RosterEntry, SignedRosterChange, change_endpoint, sign_roster_change
from mpcnet.common import agekeys
from mpcnet.common.backup import key_record, make_part
from mpcnet.common.bundle import assemble_bundle

from ..crypto.dkg_util import keygen
from ..crypto.frost.frost_util import keygen as frost_keygen

CREATED_MS = 1_764_000_000_000


def _seed(what: bytes) -> bytes:
    return hashlib.sha256(b"mpcnet backup test vector / " + what).digest()


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


ADMIN_KEYS = {n: Ed25519PrivateKey.from_private_bytes(_seed(b"admin " + n.encode())) for n in ("ada", "bob", "cyd")}
ADMINS = AdminSet({n: raw(k) for n, k in ADMIN_KEYS.items()}, 2, _seed(b"cluster"))
ROOT = ADMINS.digest()
NODE_IDENTITY = {i: Ed25519PrivateKey.from_private_bytes(_seed(b"node identity %d" % i)) for i in range(1, 6)}
NODE_ENCRYPTION = {i: _seed(b"node encryption %d" % i) for i in range(1, 6)}  # raw X25519 private keys
OFFICER_KEYS = {j: _seed(b"officer %d" % j) for j in range(1, 6)}  # raw X25519 private keys (age identities)


def entry(i: int) -> RosterEntry:
    return RosterEntry(
        i, f"node-{i}", raw(NODE_IDENTITY[i]), agekeys.public_key(NODE_ENCRYPTION[i]), _seed(b"cert %d" % i),
        f"127.0.0.1:{7000 + i}",
    )


def signed_roster(new: Roster, prev: Roster | None) -> SignedRosterChange:
    change = RosterChange(new, None if prev is None else prev.digest(), ROOT)
    return SignedRosterChange(change, tuple(sign_roster_change(change, a, ADMIN_KEYS[a]) for a in ("ada", "bob")))


ROSTER_1 = Roster(1, 0, tuple(entry(i) for i in range(1, 6)))
ROSTER_2 = change_endpoint(ROSTER_1, 2, "127.0.0.1:7102")
HISTORY = (signed_roster(ROSTER_1, None), signed_roster(ROSTER_2, ROSTER_1))


def officers(k: int) -> tuple[Officer, ...]:
    return tuple(Officer(f"officer{j}", agekeys.public_key(OFFICER_KEYS[j])) for j in range(1, k + 1))


def signed_config(k: int = 3, m: int = 2, version: int = 1, prev: RecoveryConfig | None = None) -> SignedRecoveryConfigChange:
    cfg = RecoveryConfig(version, officers(k), m, 3, 86400 * 30)
    change = RecoveryConfigChange(ROOT, None if prev is None else prev.digest(), cfg)
    return SignedRecoveryConfigChange(change, tuple(sign_recovery_config_change(change, a, ADMIN_KEYS[a]) for a in ("ada", "bob")))


@dataclass(frozen=True)
class World:
    """A key of ``committee`` (roster indices by share index), its shares by share index, its
    public record, the signed recovery configuration and the bundle of every node's part."""

    committee: tuple[int, ...]
    shares: dict[int, KeyShare | FrostKeyShare]
    key: BackupKey
    config: SignedRecoveryConfigChange
    parts: tuple[SignedBackupPart, ...]
    bundle: BackupBundle

    def node(self, share_index: int) -> int:
        return self.committee[share_index - 1]


def roster_version_of(node: int) -> int:
    """Parts of even nodes are signed at roster version 2, the others at version 1."""
    return 2 if node % 2 == 0 else 1


def world(
    t: int = 2, committee: tuple[int, ...] = (1, 2, 4), k: int = 3, m: int = 2, seed: bytes = b"seed",
    scheme: str = "ecdsa-secp256k1",
) -> World:
    """The world of a key of ``scheme`` (issue 16: a FROST scheme's key comes from the FROST DKG)."""
    shares: dict[int, KeyShare | FrostKeyShare]
    if scheme == "ecdsa-secp256k1":
        shares = dict(keygen(t, len(committee), seed))
    else:
        shares = {s.index: s for s in frost_keygen(scheme, t, len(committee), seed)}
    config = signed_config(k, m)
    key = key_record(shares[1], committee)
    parts = tuple(
        make_part(
            shares[s], node=committee[s - 1], roster_version=roster_version_of(committee[s - 1]), governance_root=ROOT,
            config_change=config, key=key, identity=NODE_IDENTITY[committee[s - 1]], now_ms=CREATED_MS - 1000,
            rng=DeterministicRng(b"split %d" % s),
        )
        for s in sorted(shares)
    )
    bundle = assemble_bundle(key, config, HISTORY, parts, CREATED_MS)
    return World(committee, shares, key, config, parts, bundle)
