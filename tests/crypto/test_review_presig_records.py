"""Review (issue 14, P1): stored presignature records (v2) as an attacker who can edit bytes.

A tombstone never decodes to a record that signs; a record has exactly one encoding (signers
strictly increasing, as presigning writes them: a reordered copy would be a second record of
the same presignature that no signer-set comparison matches); every malformed field is a
:class:`DecodeError` naming it.
"""

from __future__ import annotations

import pytest

from crypto_core.errors import DecodeError, PresignatureUsed
from crypto_core.group import Q
from crypto_core.hazmat.presignature import load_presignature
from crypto_core.sign import PRESIG_MAGIC

from .sign_util import keygen, presign

M = len(PRESIG_MAGIC)
STATUS = M + 2
# offsets in a v2 record of the master path: status, index, sigid, key_id, epoch, sid_dkg, pk
PATH_LEN = M + 2 + 1 + 2 + 32 + 32 + 4 + 32 + 33
SIGNERS = PATH_LEN + 2  # u16 count, then u16 each (empty path)


def _record(signers: tuple[int, ...] = (1, 2), me: int = 1) -> bytes:
    return presign(keygen(2, 3), signers, seed=b"rec" + bytes(signers))[me].to_bytes()


def test_a_tombstone_never_revives():
    pre = presign(keygen(2, 3), (1, 2), seed=b"tomb")[1]
    tomb = pre.mark_used()
    fresh_status = tomb[:STATUS] + b"\0" + tomb[STATUS + 1 :]
    with pytest.raises(DecodeError, match="presignature.secret"):
        load_presignature(fresh_status)
    with pytest.raises(DecodeError, match="presignature.secret"):  # zero secret is still not a secret
        load_presignature(fresh_status + bytes(95))
    revived = load_presignature(tomb)
    with pytest.raises(PresignatureUsed):
        revived.mark_used()
    relabelled = tomb[:M] + (1).to_bytes(2, "big") + tomb[M + 2 :]  # the v2 tombstone read as v1
    with pytest.raises(DecodeError):
        load_presignature(relabelled)


def test_signers_must_be_strictly_increasing():
    rec = _record()
    assert rec[SIGNERS : SIGNERS + 6] == bytes([0, 2, 0, 1, 0, 2])
    swapped = rec[: SIGNERS + 2] + bytes([0, 2, 0, 1]) + rec[SIGNERS + 6 :]
    with pytest.raises(DecodeError, match="presignature.signers"):
        load_presignature(swapped)


@pytest.mark.parametrize(
    "offset,value,field",
    [
        (STATUS, b"\x02", "presignature.status"),
        (SIGNERS + 2, b"\x00\x00", "presignature"),  # signer index 0
        (SIGNERS + 4, b"\x00\x01", "presignature"),  # duplicate signer
        (SIGNERS + 6, b"\x04", "presignature.R"),  # R's prefix byte: not a point encoding
        (SIGNERS + 6 + 33, Q.to_bytes(32, "big"), "presignature.secret"),  # phi = q
        (PATH_LEN - 33, b"\x00", "presignature.public_key"),  # infinity / bad prefix
    ],
)
def test_malformed_fields_are_named(offset, value, field):
    rec = _record()
    bad = rec[:offset] + value + rec[offset + len(value) :]
    with pytest.raises(DecodeError, match=field):
        load_presignature(bad)
