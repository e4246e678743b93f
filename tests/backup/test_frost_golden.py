"""Golden backup bundles of FROST keys (issue 16): ``vectors/bundle-frost-<scheme>.bin`` (bundle
format version 1 with a version-2 key record naming the scheme; made once from the fixed keys of
bundle_util.py and the deterministic FROST DKG of tests/crypto/frost/frost_util.py) must keep
decoding byte for byte, verifying against the same admins and giving every share back to a quorum
of officers. Regenerate (a format change!) with ``MPCNET_REGEN_BUNDLE_VECTOR=1``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crypto_core.frost.group import ED25519, SECP256K1
from governance.recovery import PiecePurpose
from mpcnet.common import agekeys
from mpcnet.common.backup import officer_check, officer_deliveries, open_deliveries
from mpcnet.common.bundle import read_bundle, verify_bundle

from .bundle_util import ADMINS, NODE_ENCRYPTION, OFFICER_KEYS, world

VECTORS = Path(__file__).resolve().parent / "vectors"
REGEN = os.environ.get("MPCNET_REGEN_BUNDLE_VECTOR") == "1"
COMMITTEE = (1, 2, 4)
# what the committed vectors hold (a change here is a change of the files, i.e. of the format)
KEY_IDS = {
    "ed25519": "7ed35ef45cfe889bc40c1de850207bb465bf56c07351b77f059fadf0ad507a89",
    "schnorr-secp256k1-bip340": "6f9080ed962441b8f6e5305d1c1ed0e810bfb8819d54d039f5c92b2931013bcc",
}
GROUPS = {"ed25519": ED25519, "schnorr-secp256k1-bip340": SECP256K1}


def golden(scheme: str) -> bytes:
    path = VECTORS / f"bundle-frost-{scheme}.bin"
    if REGEN:
        path.write_bytes(world(scheme=scheme).bundle.to_file())
    return path.read_bytes()


@pytest.mark.parametrize("scheme", sorted(KEY_IDS))
def test_the_golden_frost_bundle_decodes_byte_for_byte_verifies_and_restores(scheme: str) -> None:
    data = golden(scheme)
    bundle = read_bundle(data)
    assert bundle.format_version == 1 and bundle.to_file() == data and bundle.key.scheme == scheme
    summary = verify_bundle(bundle, ADMINS)
    assert summary.key_id.hex() == KEY_IDS[scheme] and summary.committee == COMMITTEE
    group = GROUPS[scheme]
    for j in (1, 2, 3):
        assert officer_check(bundle, OFFICER_KEYS[j]).ok
    ceremony = b"\x42" * 16
    for s, node in enumerate(COMMITTEE, 1):
        target = {s: agekeys.public_key(NODE_ENCRYPTION[node])}
        files = {
            j: officer_deliveries(bundle, OFFICER_KEYS[j], ceremony_id=ceremony, purpose=PiecePurpose.DRILL, targets=target)[s]
            for j in (2, 3)
        }
        secret, outcomes = open_deliveries(bundle, s, files, NODE_ENCRYPTION[node], ceremony_id=ceremony,
                                           purpose=PiecePurpose.DRILL)
        assert secret is not None and group.encode(group.base_mul(secret)) == bundle.key.public_shares[s - 1]
        assert outcomes == {1: "missing", 2: "ok", 3: "ok"}
