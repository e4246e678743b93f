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
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field

from governance.policy import DEFAULT_SCOPE


class PolicyChanged(Exception):
    """The policy in force for the key is not the one the approvals were checked under."""


class RosterChanged(Exception):
    """The roster in force is not the one the signers and receipts were checked under."""


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


def check_in_force(c: sqlite3.Connection, key_id: bytes, pin: InForce) -> None:
    """Inside the releasing write transaction: raise :class:`PolicyChanged` if the newest stored
    policy of ``key_id`` (its own scope, else the default scope) is not ``pin``'s, and
    :class:`RosterChanged` if the newest stored roster version is not ``pin.roster_version``;
    then ``pin.still()``, if given (what it raises propagates)."""
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
    if pin.still is not None:
        pin.still()


def _newest_policy(c: sqlite3.Connection, scope: bytes) -> int | None:
    (version,) = c.execute("SELECT MAX(version) FROM policy_changes WHERE scope = ?", (scope,)).fetchone()
    return None if version is None else int(version)
