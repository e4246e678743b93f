"""After keygen and signing, the coordinator's database files and logs, and every audit log,
contain no share, no OT/zero-seed material, no presignature secret and no plaintext
node-to-node payload."""

from __future__ import annotations

import hashlib
import re

from crypto_core.keyshare import KeyShare
from mpc_node.storage import NodeStore

from .conftest import TEST_SCRYPT_N


def _secrets_of(cluster) -> list[bytes]:
    lay = cluster.lay
    out: list[bytes] = []
    for i in range(1, lay.nodes + 1):
        nd = lay.node_dir(i)
        store = NodeStore.open(nd / "node.db", (nd / "passphrase").read_bytes().rstrip(b"\n"), i, scrypt_n=TEST_SCRYPT_N)
        try:
            for row in store.list_keys():
                ks = KeyShare.from_bytes(store.get_key_share(row.key_id, require_active=False))
                out.append(ks.secret_share.to_bytes(32, "big"))
                for p in ks.pairwise:
                    out.append(p.zero_seed)
                    out += list(p.as_bob.seeds0[:4]) + list(p.as_bob.seeds1[:4]) + list(p.as_alice.seeds[:4])
        finally:
            store.close()
    return out


# a plaintext crypto_core direct message: wire v1, protocol (1 DKG / 2 sign), round, kind DIRECT,
# 32-byte session, sender and receiver in 1..5
_DIRECT_HEADER = re.compile(rb"\x01[\x01\x02][\x01-\x04]\x01.{32}\x00[\x01-\x05]\x00[\x01-\x05]", re.DOTALL)


def test_coordinator_files_and_logs_hold_no_secret(cluster, client, team, key) -> None:
    for j in range(3):
        team.sign(key.key_id, hashlib.sha256(b"secret-scan %d" % j).digest(), path=[j])
    client.create_key("secret-scan")
    secrets = _secrets_of(cluster)
    assert len(secrets) > 50
    lay = cluster.lay
    files = sorted(lay.coordinator_dir.glob("coordinator.db*")) + sorted((lay.dir / "logs").glob("coordinator*"))
    files += sorted(lay.coordinator_dir.glob("audit.db*")) + sorted(lay.dir.glob("nodes/node-*/audit.db*"))
    assert any(f.name == "coordinator.db" for f in files) and any(f.suffix == ".log" for f in files)
    assert any(f.name == "audit.db" for f in files)
    for f in files:
        data = f.read_bytes()
        for s in secrets:
            assert s not in data, f"{f.name} contains secret material"
            assert s.hex().encode() not in data, f"{f.name} contains secret material (hex)"
        assert not _DIRECT_HEADER.search(data), f"{f.name} contains a plaintext direct protocol message"
