"""Sans-IO threshold ECDSA (DKLs23) over secp256k1.

Every protocol here is a pure state machine: round messages (bytes) in, round messages out.
No sockets, threads, clocks or files; randomness comes from an injectable :class:`~crypto_core.rng.Rng`.

The public API is what :data:`__all__` names: the protocol state machines (:class:`DkgParty`,
:class:`PresignParty`, :class:`PresignBatch`), their configurations, the records they produce (:class:`KeyShare`,
:class:`Presignature`, used through ``mark_used()`` then ``signature_share()``), public
combining and verification (:mod:`crypto_core.combiner`), BIP32 public derivation, the group
element, the errors and the public parameters. Primitives that are unsafe on their own (raw EC,
GF(2^128), base OT, OT extension, RVOLE, the pairwise OT seeds, reviving a stored presignature)
live in :mod:`crypto_core.hazmat` and are not re-exported.

The names are loaded on first use (PEP 562), so importing one submodule does not load the
others: a combiner that imports :mod:`crypto_core.combiner` never loads the modules that hold
key or presignature secrets.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .bip32 import Derived, check_path, derive, parse_path
    from .combiner import DIGEST_LEN, PresignatureView, Signature, SignatureShare, combine, digest_of, recover, verify
    from .dkg import DkgConfig, DkgParty
    from .errors import DecodeError, PresignatureUsed, ProtocolAbort, ProtocolError, UsageError
    from .group import Point
    from .keyshare import KeyShare
    from .params import LAMBDA_C, MAX_LABEL, MAX_PARTIES, SUPPORTED_LAMBDA
    from .rng import SYSTEM_RNG, Rng, SystemRng
    from .session import Delivery, RoundOutput
    from .sign import BatchConfig, Presignature, PresignBatch, PresignParty, SignConfig

# public name -> the submodule that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("Derived", "check_path", "derive", "parse_path"), "bip32"),
    **dict.fromkeys(
        ("DIGEST_LEN", "PresignatureView", "Signature", "SignatureShare", "combine", "digest_of", "recover", "verify"),
        "combiner",
    ),
    **dict.fromkeys(("DkgConfig", "DkgParty"), "dkg"),
    **dict.fromkeys(("DecodeError", "PresignatureUsed", "ProtocolAbort", "ProtocolError", "UsageError"), "errors"),
    "Point": "group",
    "KeyShare": "keyshare",
    **dict.fromkeys(("LAMBDA_C", "MAX_LABEL", "MAX_PARTIES", "SUPPORTED_LAMBDA"), "params"),
    **dict.fromkeys(("SYSTEM_RNG", "Rng", "SystemRng"), "rng"),
    **dict.fromkeys(("Delivery", "RoundOutput"), "session"),
    **dict.fromkeys(("BatchConfig", "Presignature", "PresignBatch", "PresignParty", "SignConfig"), "sign"),
}

__all__ = [
    "DIGEST_LEN",
    "LAMBDA_C",
    "MAX_LABEL",
    "MAX_PARTIES",
    "SUPPORTED_LAMBDA",
    "SYSTEM_RNG",
    "BatchConfig",
    "DecodeError",
    "Delivery",
    "Derived",
    "DkgConfig",
    "DkgParty",
    "KeyShare",
    "Point",
    "PresignBatch",
    "PresignParty",
    "Presignature",
    "PresignatureUsed",
    "PresignatureView",
    "ProtocolAbort",
    "ProtocolError",
    "Rng",
    "RoundOutput",
    "SignConfig",
    "Signature",
    "SignatureShare",
    "SystemRng",
    "UsageError",
    "check_path",
    "combine",
    "derive",
    "digest_of",
    "parse_path",
    "recover",
    "verify",
]


def __getattr__(name: str) -> object:
    """Load a public name from its submodule on first access (then cache it here)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value: object = getattr(_submodule(module), name)
    globals()[name] = value
    return value


def _submodule(module: str) -> ModuleType:
    """The submodule that defines a public name: static imports, one per module (no dynamic
    import, so the import contract sees every one; importing one loads only that one)."""
    match module:
        case "bip32":
            from . import bip32

            return bip32
        case "combiner":
            from . import combiner

            return combiner
        case "dkg":
            from . import dkg

            return dkg
        case "errors":
            from . import errors

            return errors
        case "group":
            from . import group

            return group
        case "keyshare":
            from . import keyshare

            return keyshare
        case "params":
            from . import params

            return params
        case "rng":
            from . import rng

            return rng
        case "session":
            from . import session

            return session
        case "sign":
            from . import sign

            return sign
        case _:
            raise AttributeError(f"module {__name__!r} has no submodule {module!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
