"""Governance for signing keys: admin-controlled policies, m-of-k approvals, a signed audit log.

Pure, sans-IO checks that the coordinator *and* every node run on the same inputs
(:mod:`governance.policy`, :mod:`governance.approval`), over one canonical encoding
(:mod:`governance.encoding`), and the rules of the append-only, hash-chained, signed audit log
(:mod:`governance.audit`; its SQLite store is :mod:`mpcnet.common.stores.audit`), and the
admin-governed node roster (:mod:`governance.roster`). No I/O: no files,
sockets, threads or clocks (``tests/test_import_contract.py`` enforces it). Every failure is a
:class:`GovernanceError` naming the field.
"""

from .approval import (
    Approval,
    ApprovalBundle,
    Decision,
    QuorumResult,
    SigningRequest,
    Tally,
    check_approval,
    check_request,
    rate_limit_ok,
    sign_approval,
    tally,
    verify_approvals,
)
from .audit import AuditEntry, AuditReport, verify_entries
from .errors import GovernanceError
from .policy import (
    DEFAULT_SCOPE,
    AdminSet,
    AdminSignature,
    KeyPolicy,
    PolicyChange,
    RateLimit,
    SignedPolicyChange,
    check_admin_signature,
    sign_policy_change,
    verify_policy_change,
)
from .roster import (
    NodeStatus,
    Roster,
    RosterChange,
    RosterEntry,
    SignedRosterChange,
    active_entries,
    is_revoked_identity,
    sign_roster_change,
    verify_roster_change,
    verify_roster_history,
)

__all__ = [
    "DEFAULT_SCOPE",
    "AdminSet",
    "AdminSignature",
    "Approval",
    "ApprovalBundle",
    "AuditEntry",
    "AuditReport",
    "Decision",
    "GovernanceError",
    "KeyPolicy",
    "NodeStatus",
    "PolicyChange",
    "QuorumResult",
    "RateLimit",
    "Roster",
    "RosterChange",
    "RosterEntry",
    "SignedPolicyChange",
    "SignedRosterChange",
    "SigningRequest",
    "Tally",
    "active_entries",
    "check_admin_signature",
    "check_approval",
    "check_request",
    "is_revoked_identity",
    "rate_limit_ok",
    "sign_approval",
    "sign_policy_change",
    "sign_roster_change",
    "tally",
    "verify_approvals",
    "verify_entries",
    "verify_policy_change",
    "verify_roster_change",
    "verify_roster_history",
]
