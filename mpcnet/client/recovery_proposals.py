"""The two lifecycle proposal kinds of issue 12 as the client reads them: ``recovery-config``
(a :class:`~governance.recovery.SignedRecoveryConfigChange`) and ``recovery-order`` (a
:class:`~governance.recovery.SignedRecoveryOrder`). :mod:`mpcnet.client.lifecycle` decodes,
signs and describes proposals through these functions; the checks that need the coordinator
(the configuration chain, the bundle, the key) are :mod:`mpcnet.client.backup`'s.

Pure: no network, no secret. Errors are :class:`governance.errors.GovernanceError` naming the field.
"""

from __future__ import annotations

import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.errors import GovernanceError
from governance.policy import AdminSignature
from governance.recovery import (
    RecoveryOrderKind,
    SignedRecoveryConfigChange,
    SignedRecoveryOrder,
    sign_recovery_config_change,
    sign_recovery_order,
)
from mpcnet.common import agekeys


def _when(ms: int) -> str:
    """``ms`` (Unix milliseconds) as a UTC time, or the raw number when out of the calendar's range."""
    try:
        return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") + f" ({ms} ms)"
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms since the Unix epoch"


RECOVERY_KINDS = ("recovery-config", "recovery-order")

RecoverySigned = SignedRecoveryConfigChange | SignedRecoveryOrder


def decode(kind: str, raw: bytes) -> tuple[RecoverySigned, bytes, bytes]:
    """``(signed, message, digest)`` of a proposal of ``kind`` (one of :data:`RECOVERY_KINDS`):
    the signed object decoded strictly from ``raw``, the canonical bytes the admins sign and its
    SHA-256 (what the proposal id and ``--expect-digest`` name). GovernanceError when malformed;
    ValueError for another kind."""
    if kind == "recovery-config":
        change = SignedRecoveryConfigChange.from_bytes(raw)
        return change, change.change.encode(), change.change.digest()
    if kind == "recovery-order":
        order = SignedRecoveryOrder.from_bytes(raw)
        return order, order.order.encode(), order.order.digest()
    raise ValueError(kind)


def digest(signed: RecoverySigned) -> bytes:
    """SHA-256 of the canonical change or order (what the admins sign)."""
    if isinstance(signed, SignedRecoveryConfigChange):
        return signed.change.digest()
    return signed.order.digest()


def sign(signed: RecoverySigned, admin: str, key: Ed25519PrivateKey) -> AdminSignature:
    """Admin ``admin``'s signature over the change or order of ``signed``."""
    if isinstance(signed, SignedRecoveryConfigChange):
        return sign_recovery_config_change(signed.change, admin, key)
    return sign_recovery_order(signed.order, admin, key)


def is_export(signed: object) -> bool:
    """True for a break-glass export order (it needs the export quorum, not the admin quorum)."""
    return isinstance(signed, SignedRecoveryOrder) and signed.order.kind is RecoveryOrderKind.EXPORT


def as_dict(signed: RecoverySigned) -> dict[str, Any]:
    """The ``recovery_config`` or ``recovery_order`` entry of a proposal's JSON view."""
    if isinstance(signed, SignedRecoveryConfigChange):
        return {"recovery_config": signed.change.config.to_dict()}
    return {"recovery_order": signed.order.to_dict()}


def describe(signed: RecoverySigned) -> list[tuple[str, str]]:
    """``(name, value)`` rows that say what approving does: the officers and quorums of a
    configuration; for an order what is restored (key, epoch, bundle, each share and the node
    receiving it), the reason and the follow-up key operation, or, loudly, a break-glass export
    of the whole private key. Values are plain text (the caller escapes them)."""
    if isinstance(signed, SignedRecoveryConfigChange):
        c = signed.change.config
        rows = [("recovery config", f"version {c.version}: {c.quorum}-of-{len(c.officers)} officers, "
                                    f"export quorum {c.export_quorum} admins")]
        rows += [(f"officer {i}", f"{o.name}  {agekeys.recipient_text(o.recipient)}") for i, o in enumerate(c.officers, 1)]
        period = f"every {c.drill_period_s // 86400} days ({c.drill_period_s} s)" if c.drill_period_s else "not required"
        rows.append(("drill", period))
        return rows
    o = signed.order
    if o.kind is RecoveryOrderKind.EXPORT:
        rows = [
            ("BREAK-GLASS", "EXPORT OF THE WHOLE PRIVATE KEY to an off-line recipient (loudly audited everywhere)"),
            ("key", o.key_id.hex()), ("public key", o.public_key.hex()), ("epoch", str(o.epoch)),
            ("shares", ", ".join(str(t.share_index) for t in o.targets)), ("recipient", agekeys.recipient_text(o.export_recipient)),
        ]
    else:
        rows = [("restore", f"key {o.key_id.hex()} at epoch {o.epoch}"), ("public key", o.public_key.hex())]
        rows += [("target", f"share {t.share_index} -> node {t.node}") for t in o.targets]
    rows += [("bundle", o.bundle_digest.hex()), ("recovery config", f"version {o.config_version}"),
             ("roster version", str(o.roster_version)), ("order id", o.order_id.hex()),
             ("expires", _when(o.expires_ms))]
    f = o.follow_up
    if f is not None:
        rows.append(("follow-up", f"{f.kind.name.lower()} epoch {f.old_epoch} -> {f.new_epoch}  {f.old_threshold}-of-"
                                  f"{list(f.old_committee)} -> {f.new_threshold}-of-{list(f.new_committee)} "
                                  f"(operation {f.proposal_id})"))
    rows.append(("reason", o.reason))
    return rows


def summary(signed: RecoverySigned) -> str:
    """One line for ``mpc lifecycle list``."""
    if isinstance(signed, SignedRecoveryConfigChange):
        c = signed.change.config
        return f"recovery config v{c.version} ({c.quorum}-of-{len(c.officers)})"
    o = signed.order
    if o.kind is RecoveryOrderKind.EXPORT:
        return f"BREAK-GLASS EXPORT key {o.key_id.hex()[:16]}"
    return f"restore key {o.key_id.hex()[:16]} shares {','.join(str(t.share_index) for t in o.targets)}"


__all__ = ["RECOVERY_KINDS", "GovernanceError", "RecoverySigned", "as_dict", "decode", "describe", "digest", "is_export", "sign", "summary"]
