"""The one registry of domain-separation tags.

Every hash, commitment, PRG and Fiat-Shamir challenge in :mod:`crypto_core` takes its tag from
:class:`Tag`, so that no two uses can collide and a version change aborts early (ToB-SILA-11).
The full tag is ``PREFIX + value``; :func:`enum.unique` and a test guarantee uniqueness.
"""

from __future__ import annotations

import enum

PREFIX = b"MPCNET-DKLS23/v1/"


@enum.unique
class Tag(enum.Enum):
    # primitives
    COMMIT = "commit"
    SCHNORR = "schnorr/challenge"
    HASH_TO_CURVE = "h2c"
    # DKG (notes section 2)
    DKG_SID = "dkg/sid"
    DKG_CONFIG = "dkg/config"
    DKG_COMMIT_F = "dkg/commit-feldman"
    DKG_COMMIT_CC = "dkg/commit-chaincode"
    DKG_COEF_POK = "dkg/pok-coefficient"
    DKG_SHARE_POK = "dkg/pok-share"
    DKG_CC_ROOT = "dkg/chaincode-root"
    DKG_ECHO1 = "dkg/echo-round1"
    DKG_ECHO2 = "dkg/echo-round2"
    DKG_ECHO3 = "dkg/echo-round3"
    DKG_CONFIRM = "dkg/confirm"
    DKG_PAIR_CONFIRM = "dkg/pair-confirm"
    KEY_ID = "dkg/key-id"
    # pairwise setup (notes section 3)
    OT_SETUP_SID = "ot/setup-sid"
    BASE_OT_KEY = "ot/base-key"
    ZERO_SEED = "zero/seed"
    # OT extension and RVOLE (notes sections 4 and 5)
    OTE_PRG = "ote/prg"
    OTE_CHI = "ote/chi"
    OTE_TRANSCRIPT = "ote/transcript"
    OTE_ROT = "ote/rot"
    RVOLE_GADGET = "rvole/gadget"
    RVOLE_THETA = "rvole/theta"
    RVOLE_MU = "rvole/mu"
    # signing (notes sections 6 and 7)
    SIGN_SID = "sign/sid"
    SIGN_RVOLE_SID = "sign/rvole-sid"
    SIGN_ZERO_SID = "sign/zero-sid"
    SIGN_ZERO = "sign/zero"
    SIGN_COMMIT_R = "sign/commit-R"
    SIGN_ECHO = "sign/echo"
    # pool presignatures (issue 14): Groth-Shoup re-randomisation of R at the online step
    SIGN_RERANDOMIZE = "sign/presign-rerandomize/v1"
    SIGN_BATCH_SID = "sign/presign-batch-sid/v1"
    # refresh and quorum change (notes section 9)
    RESHARE_SID = "reshare/sid"
    RESHARE_CONFIG = "reshare/config"
    RESHARE_COMMIT_G = "reshare/commit-feldman"
    RESHARE_COEF_POK = "reshare/pok-coefficient"
    RESHARE_ECHO1 = "reshare/echo-round1"
    RESHARE_ECHO2 = "reshare/echo-round2"
    RESHARE_ECHO3 = "reshare/echo-round3"
    RESHARE_CONFIRM = "reshare/confirm"
    RESHARE_PAIR_CONFIRM = "reshare/pair-confirm"
    RESHARE_OLD_SHARES = "reshare/old-public-shares"
    # key-share and presignature records
    RECORD_CHECKSUM = "record/checksum"
    # FROST keys (issue 16): DKG over a generic group, key ids of Schnorr keys
    FROST_KEY_ID = "frost/key-id/v1"
    FROST_DKG_SID = "frost/dkg/sid/v1"
    FROST_DKG_CONFIG = "frost/dkg/config/v1"
    FROST_DKG_COMMIT_F = "frost/dkg/commit-feldman/v1"
    FROST_DKG_COEF_POK = "frost/dkg/pok-coefficient/v1"
    FROST_DKG_SHARE_POK = "frost/dkg/pok-share/v1"
    FROST_POK = "frost/pok/challenge/v1"
    FROST_DKG_ECHO1 = "frost/dkg/echo-round1/v1"
    FROST_DKG_ECHO2 = "frost/dkg/echo-round2/v1"
    FROST_DKG_ECHO3 = "frost/dkg/echo-round3/v1"
    FROST_DKG_CONFIRM = "frost/dkg/confirm/v1"

    @property
    def bytes(self) -> bytes:
        return PREFIX + self.value.encode("ascii")
