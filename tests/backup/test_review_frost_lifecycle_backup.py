"""Review (issue 16, RC): scheme downgrades of a FROST key's backup bundle.

A bip340 key's record shares its element encodings (33-byte SEC1) with an ECDSA record, so a
hostile coordinator could try to present the FROST bundle as an ECDSA (version 1) record of the
same key id, public key and shares (a zero chain code), or an ECDSA bundle as a FROST one: each
must be refused by :func:`verify_bundle` naming the key record (never an honest node), never
decoded in the wrong group.
"""

from __future__ import annotations

import dataclasses

import pytest

from governance.encoding import Encoder
from governance.recovery import BACKUP_KEY_V2_TAG, BackupBundle, BackupKey
from mpcnet.common.bundle import BundleError, verify_bundle

from .bundle_util import ADMINS, world
from .test_frost_bundle import W, resign


def _refused_naming_the_record(bundle: BackupBundle) -> None:
    """Refused naming the bundle's key record, and no node: every node signed a part naming its
    own (other) record, so the record was altered after the parts were made (Finding RC-1: it
    named node 1's part, blaming an honest node for the assembler's tampering)."""
    with pytest.raises(BundleError) as e:
        verify_bundle(bundle, ADMINS)
    assert (e.value.field, e.value.node) == ("key", None), e.value


def test_a_bip340_bundle_presented_as_an_ecdsa_record_is_refused() -> None:
    w = W("schnorr-secp256k1-bip340")
    key = w.key
    ecdsa = BackupKey(
        key_id=key.key_id, public_key=key.public_key, chain_code=bytes(32), label=key.label, threshold=key.threshold,
        epoch=key.epoch, committee=key.committee, public_shares=key.public_shares,
    )
    assert not ecdsa.encode().startswith(Encoder(BACKUP_KEY_V2_TAG).finish())  # the version-1 record
    _refused_naming_the_record(dataclasses.replace(w.bundle, key=ecdsa))


def test_an_ecdsa_bundle_presented_as_a_bip340_record_is_refused() -> None:
    w = world()
    key = w.key
    frost = BackupKey(
        key_id=key.key_id, public_key=key.public_key, chain_code=b"", label=key.label, threshold=key.threshold,
        epoch=key.epoch, committee=key.committee, public_shares=key.public_shares, scheme="schnorr-secp256k1-bip340",
    )
    _refused_naming_the_record(dataclasses.replace(w.bundle, key=frost))


@pytest.mark.parametrize("scheme", ("ed25519", "schnorr-secp256k1-bip340"))
def test_an_altered_frost_key_record_names_the_record_not_an_honest_node(scheme: str) -> None:
    w = W(scheme)
    _refused_naming_the_record(dataclasses.replace(w.bundle, key=dataclasses.replace(w.key, label="relabelled")))


def test_a_part_naming_another_record_still_names_its_node() -> None:
    """Only one node's part disagrees with the record the others name: that node is at fault."""
    w = W("ed25519")
    sp = w.bundle.parts[1]
    bad = resign(sp, key_digest=bytes(32))
    bundle = dataclasses.replace(w.bundle, parts=(w.bundle.parts[0], bad, *w.bundle.parts[2:]))
    with pytest.raises(BundleError) as e:
        verify_bundle(bundle, ADMINS)
    assert (e.value.field, e.value.node) == ("parts[1].key_digest", sp.part.node), e.value
