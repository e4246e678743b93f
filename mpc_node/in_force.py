"""What a signature share's checks were made under, re-checked inside the transaction that
releases it (the consume of a presignature or FROST nonce, or a signing session's last step).

A node checks a request's approvals against the policy in force for the key, and the signers (and
reservation receipts) against the roster in force, *before* the one transaction that records the
request served and consumes the presignature or nonce. An admin-signed policy change (an approver
or requester revoked, another quorum) or a roster change (a node revoked) installed between that
check and the transaction must still stop the share: a revocation holds for every call already
past its checks, at once. Both installs are durable writes to the same store
(``policy_changes``, ``roster_changes``), so the consume transaction reads what is in force *now*
and refuses when it is not what the checks used (:class:`PolicyChanged`, :class:`RosterChanged`);
nothing is consumed, recorded or released then, and the caller refuses with ``stale-policy`` /
``stale-roster``. Two indexed lookups per release (a few microseconds).

The admin-signed policy attestation (:mod:`governance.attestation`; required when the node's
``policy_max_age_s`` > 0) is the third such value: the checks confirmed this node's heads against
the attestation held *then*, and a newer one kept meanwhile (``put_policy_attestation``, the
``meta`` rows ``policy_attestation_ms`` / ``policy_attestation``) may no longer confirm them
(it names a newer head: this node missed a change). :class:`AttestationPin` records which
attestation the check used (its ``issued_at_ms``) and the heads it named for the key's own scope
and the default scope; the release refuses (:class:`AttestationChanged`, ``stale-policy`` naming
``policy_attestation``) when the newest stored attestation is another one that names other heads
for either scope. A newer attestation naming the *same* heads (the routine re-attestation that
keeps the node within its maximum age) confirms exactly what was checked and does not stop the
share. One more indexed lookup per release; the stored attestation is decoded only when it changed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field

from governance.attestation import PolicyHead, SignedPolicyAttestation
from governance.errors import GovernanceError
from governance.policy import DEFAULT_SCOPE


class InForceChanged(Exception):
    """Something a share's checks used is no longer in force: nothing was released."""


class PolicyChanged(InForceChanged):
    """The policy in force for the key is not the one the approvals were checked under."""


class RosterChanged(InForceChanged):
    """The roster in force is not the one the signers and receipts were checked under."""


class AttestationChanged(InForceChanged):
    """The newest stored policy attestation is not the one the checks used, and names other
    heads for the key's scope or the default scope (its message starts ``policy_attestation:``)."""


@dataclass(frozen=True)
class AttestationPin:
    """The attestation a share's checks were confirmed by: its ``issued_at_ms`` (Unix ms) and
    the heads it named for the key's own scope (``key_head``; None: no policy of its own) and
    the default scope (``default_head``)."""

    issued_at_ms: int
    key_head: PolicyHead | None
    default_head: PolicyHead | None


@dataclass(frozen=True)
class InForce:
    """The policy (``scope``: the key id or :data:`~governance.policy.DEFAULT_SCOPE`; its
    ``policy_version``) and the roster version (0: a fixed legacy roster) a share's checks used.
    ``still``: a check of in-memory state run last inside the transaction, raising to refuse
    (the bans: :class:`mpc_node.bans.BanRegistry` counts a ban before its store write, and a
    store that refused the write keeps the presignatures the write would have deleted)."""

    scope: bytes
    policy_version: int
    roster_version: int
    still: Callable[[], None] | None = field(default=None, compare=False)
    attestation: AttestationPin | None = None  # None: attestations not required (policy_max_age_s 0)


def check_in_force(c: sqlite3.Connection, key_id: bytes, pin: InForce) -> None:
    """Inside the releasing write transaction: raise :class:`PolicyChanged` if the newest stored
    policy of ``key_id`` (its own scope, else the default scope) is not ``pin``'s, and
    :class:`RosterChanged` if the newest stored roster version is not ``pin.roster_version``,
    :class:`AttestationChanged` if ``pin.attestation`` is given and the newest stored attestation
    changed in a way that matters (:func:`check_attestation`); then ``pin.still()``, if given
    (what it raises propagates)."""
    scope, version = key_id, _newest_policy(c, key_id)
    if version is None:
        scope, version = DEFAULT_SCOPE, _newest_policy(c, DEFAULT_SCOPE)
    if (scope, version) != (pin.scope, pin.policy_version):
        now = "no policy" if version is None else f"version {version} of scope {'default' if scope == DEFAULT_SCOPE else 'key'}"
        raise PolicyChanged(
            f"policy_version: the key's policy changed while the request was checked (now {now}; the approvals were"
            f" checked under version {pin.policy_version}): nothing was released"
        )
    (roster,) = c.execute("SELECT COALESCE(MAX(version), 0) FROM roster_changes").fetchone()
    if int(roster) != pin.roster_version:
        raise RosterChanged(
            f"roster: changed to version {int(roster)} while the request was checked under version {pin.roster_version}:"
            " nothing was released"
        )
    if pin.attestation is not None:
        check_attestation(c, key_id, pin.attestation)
    if pin.still is not None:
        pin.still()


def check_attestation(c: sqlite3.Connection, key_id: bytes, pin: AttestationPin) -> None:
    """Inside the releasing transaction: return if the newest stored attestation is ``pin``'s
    (same ``issued_at_ms``), or a newer one naming the same heads for ``key_id``'s scope and the
    default scope; else raise :class:`AttestationChanged` (also when none is stored or the stored
    one does not decode: the node cannot show what confirms the release)."""
    row = c.execute("SELECT value FROM meta WHERE name = 'policy_attestation_ms'").fetchone()
    if row is not None and isinstance(row[0], int) and row[0] == pin.issued_at_ms:
        return
    data = c.execute("SELECT value FROM meta WHERE name = 'policy_attestation'").fetchone()
    checked = f"the request was checked under the attestation issued at {pin.issued_at_ms}"
    if row is None or data is None or not isinstance(data[0], bytes):
        raise AttestationChanged(f"policy_attestation: none is stored any more ({checked}): nothing was released")
    try:
        att = SignedPolicyAttestation.from_bytes(bytes(data[0])).attestation
    except GovernanceError:
        raise AttestationChanged(f"policy_attestation: the stored attestation does not decode ({checked}): nothing was released") from None
    for scope, pinned in ((key_id, pin.key_head), (DEFAULT_SCOPE, pin.default_head)):
        named = att.head(scope)
        if (named is None and pinned is None) or (named is not None and named.same(pinned)):
            continue
        scope_text = "default" if scope == DEFAULT_SCOPE else "key"
        now = "no policy" if named is None else f"version {named.version}"
        was = "no policy" if pinned is None else f"version {pinned.version}"
        raise AttestationChanged(
            f"policy_attestation: a newer attestation (issued at {att.issued_at_ms}) names {now} for the {scope_text} scope"
            f" while the request was checked under one naming {was} ({checked}): nothing was released"
        )


def _newest_policy(c: sqlite3.Connection, scope: bytes) -> int | None:
    (version,) = c.execute("SELECT MAX(version) FROM policy_changes WHERE scope = ?", (scope,)).fetchone()
    return None if version is None else int(version)
