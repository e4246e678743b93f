"""The roster history file the admins publish after a roster change (issue 13, README "Deploying").

Format (public, JSON): a list of ``SignedRosterChange.to_dict()``, roster version 1 first, the
roster in force last: exactly what ``mpc roster show --history`` prints (verified there against
the client's admin set) and what a node config holds as ``governance.roster_history``. ``mpc-node
join --roster FILE`` reads it with :func:`load_roster_history` and verifies it with
:func:`verify_against_genesis`: the chain verifies change by change against the genesis's admin
set (an admin quorum on each) and its version 1 is the genesis's own roster change. Errors:
:class:`~mpcnet.common.enrolment.EnrolmentError` naming ``roster`` (or ``roster[i].FIELD``).
"""

from __future__ import annotations

import hmac
from pathlib import Path

from governance.errors import GovernanceError
from governance.roster import Roster, SignedRosterChange, verify_roster_history
from mpcnet.common.enrolment import EnrolmentError, read_json
from mpcnet.common.genesis import Genesis

MAX_ROSTER_FILE_BYTES = 8 * 1024 * 1024
MAX_CHANGES = 10_000


def load_roster_history(path: Path) -> tuple[SignedRosterChange, ...]:
    """Parse (not verify) the roster history file ``path``: a non-empty JSON list of signed
    roster changes. EnrolmentError naming ``roster`` or ``roster[i].FIELD``."""
    doc = read_json(path, "roster", MAX_ROSTER_FILE_BYTES)
    if not isinstance(doc, list) or not doc or len(doc) > MAX_CHANGES:
        raise EnrolmentError("roster", "must be a non-empty JSON list of signed roster changes ('mpc roster show --history')")
    out = []
    for i, item in enumerate(doc):
        try:
            out.append(SignedRosterChange.from_dict(item))
        except GovernanceError as e:
            raise EnrolmentError(f"roster[{i}].{e.field}", e.reason) from None
    return tuple(out)


def roster_line(roster: Roster) -> str:
    """What ``join`` prints about the roster it configured: its version and digest (hex), to
    compare with the admins' ``mpc roster show``. A roster file holds no freshness: a verified
    but older chain (an earlier roster in which this node was still active) verifies too, so
    only this comparison reveals a roll-back."""
    return (f"roster version {roster.version} (digest {roster.digest().hex()}): check it is the version and digest "
            "'mpc roster show' prints for the roster in force")


def verify_against_genesis(genesis: Genesis, history: tuple[SignedRosterChange, ...]) -> Roster:
    """The roster in force (the last) of ``history`` once it verifies against the genesis's admin
    set and starts with the genesis's roster change (version 1). EnrolmentError: ``roster[0]``
    for another first roster, ``roster`` ("signed by too few admins", a broken chain)."""
    if not hmac.compare_digest(history[0].change.digest(), genesis.roster_change.change.digest()):
        raise EnrolmentError("roster[0]", "is not the genesis's roster version 1 (a roster of another cluster?)")
    try:
        return verify_roster_history(genesis.admin_set, history)
    except GovernanceError as e:
        if e.field.endswith("signatures") and "required" in e.reason:
            raise EnrolmentError("roster", f"signed by too few admins ({e.reason})") from None
        raise EnrolmentError(f"roster.{e.field}", e.reason) from None
