"""Governance for signing keys: admin-controlled policies, m-of-k approvals, a signed audit log.

Pure, sans-IO checks that the coordinator *and* every node run on the same inputs
(:mod:`governance.policy`, :mod:`governance.approval`), over one canonical encoding
(:mod:`governance.encoding`), and the rules of the append-only, hash-chained, signed audit log
(:mod:`governance.audit`; its SQLite store is :mod:`mpcnet.common.stores.audit`). No I/O: no files,
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
    "PolicyChange",
    "QuorumResult",
    "RateLimit",
    "SignedPolicyChange",
    "SigningRequest",
    "Tally",
    "check_admin_signature",
    "check_approval",
    "check_request",
    "rate_limit_ok",
    "sign_approval",
    "sign_policy_change",
    "tally",
    "verify_approvals",
    "verify_entries",
    "verify_policy_change",
]
