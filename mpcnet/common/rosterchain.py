"""The roster chain a server starts with (issue 11): the longer of its config's
``governance.roster_history`` and the chain its own store holds, one a prefix of the other,
verified against the server's admin set. Shared by the node (:mod:`mpc_node.roster_state`) and
the coordinator (:mod:`coordinator.roster`)."""

from __future__ import annotations

from collections.abc import Sequence

from governance.errors import GovernanceError
from governance.policy import AdminSet
from governance.roster import Roster, SignedRosterChange, verify_roster_history


class RosterStartError(RuntimeError):
    """The config's roster chain and the stored one disagree, or the chain does not verify (the
    server does not start)."""


def start_chain(
    admins: AdminSet, stored: Sequence[SignedRosterChange], given: Sequence[SignedRosterChange], *, where: str
) -> tuple[list[SignedRosterChange], Roster]:
    """The longer of ``stored`` and ``given`` (the shorter must be its prefix) and the roster at
    its end. ``where`` names the stored chain in the error ("the roster in the database").
    Raises :class:`RosterStartError`; the caller stores the suffix it lacks."""
    short, long = (stored, given) if len(stored) <= len(given) else (given, stored)
    for k, (a, b) in enumerate(zip(short, long[: len(short)], strict=True)):
        if a.to_bytes() != b.to_bytes():
            raise RosterStartError(f"governance.roster_history[{k}] differs from version {k + 1} of {where}; fix the config")
    try:
        roster = verify_roster_history(admins, long)
    except GovernanceError as e:
        raise RosterStartError(f"the stored roster chain does not verify: {e.field}: {e.reason}") from None
    return list(long), roster
