"""Public protocol parameters and limits: plain constants, no secret state.

Safe for any layer to import (the coordinator validates key labels against :data:`MAX_LABEL`
without loading any module that holds key or presignature material).

* :data:`MAX_LABEL`: longest key label, in bytes (UTF-8), a key-share record or a DKG accepts.
* :data:`MAX_PARTIES`: largest ``n`` of a key (``2 <= t <= n <= MAX_PARTIES``).
* :data:`SUPPORTED_LAMBDA`: the allowed ``lambda_c``: base OTs per ordered pair, i.e. rows of the
  OT extension and its computational security parameter (bits).
* :data:`LAMBDA_C`: the default ``lambda_c``. 128 matches the 128-bit security of secp256k1 itself
  (Trail of Bits' recommendation in their DKLs23 audit); 256 is what the reference
  implementations use. Stored per key.
"""

from __future__ import annotations

MAX_LABEL = 256
MAX_PARTIES = 1024
SUPPORTED_LAMBDA = (128, 256)
LAMBDA_C = 128

__all__ = ["LAMBDA_C", "MAX_LABEL", "MAX_PARTIES", "SUPPORTED_LAMBDA"]
