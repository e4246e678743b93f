"""Which certificate roles may call which Coordinator RPC (the README's role matrix).

A role comes from the OU of the caller's mTLS certificate; the name (CN) is the person or
service, and must equal the name used in policies (an approver approves as itself, an admin
signs as itself, a requester's requests carry its name). Reading is open to every governance
role, with one restriction enforced in the service: a requester sees only its own signing
requests.
"""

from __future__ import annotations

ADMIN = "admin"
REQUESTER = "requester"
APPROVER = "approver"
AUDITOR = "auditor"
OFFICER = "officer"  # a recovery officer (issue 12): backups, drills and recovery ceremonies
GOVERNANCE_ROLES = (ADMIN, REQUESTER, APPROVER, AUDITOR)
READ = GOVERNANCE_ROLES

RPC_ROLES: dict[str, tuple[str, ...]] = {
    "CreateKey": (ADMIN,),
    "GetKey": READ,
    "ListKeys": READ,
    "GetRequest": READ,
    "ClusterStatus": READ,
    "SubmitSignRequest": (REQUESTER,),
    "DecideSignRequest": (APPROVER,),
    "GetSignRequest": READ,
    "ListSignRequests": READ,
    "WatchSignRequest": READ,
    "GetPolicy": READ,
    "ProposePolicyChange": (ADMIN,),
    "ApprovePolicyChange": (ADMIN,),
    "GetPolicyProposal": READ,
    "ListPolicyProposals": READ,
    "ListPolicies": READ,
    "GetPolicyHistory": READ,
    "SubmitPolicyAttestation": (ADMIN,),
    "GetAuditLog": (AUDITOR,),
    # key lifecycle and roster (issue 11)
    "ProposeRosterChange": (ADMIN,),
    "ProposeKeyOperation": (ADMIN,),
    "ApproveLifecycleProposal": (ADMIN,),
    "GetLifecycleProposal": READ,
    "ListLifecycleProposals": READ,
    "GetRoster": READ,
    "GetKeyOperation": READ,
    "ListKeyOperations": READ,
    "PrepareNodeKeyRotation": (ADMIN,),
    "InstallNodeCertificate": (ADMIN,),
    # backup and recovery (issue 12); officers also read the roster and the cluster status
    "ProposeRecoveryConfig": (ADMIN,),
    "ProposeRecoveryOrder": (ADMIN,),
    "GetRecoveryConfig": (*READ, OFFICER),
    "ExportBackup": (ADMIN, OFFICER, AUDITOR),
    "ListBackups": (ADMIN, OFFICER, AUDITOR),
    "StartDrill": (ADMIN, OFFICER),
    "SubmitRecoveryPieces": (OFFICER,),
    "GetCeremony": (*READ, OFFICER),
    "ListCeremonies": (*READ, OFFICER),
}
for _method in ("GetRoster", "ClusterStatus"):
    RPC_ROLES[_method] = (*RPC_ROLES[_method], OFFICER)

# requesters read only their own signing requests; these roles read all of them
READ_ALL_REQUESTS = (ADMIN, APPROVER, AUDITOR)


def allowed(method: str) -> tuple[str, ...]:
    """Roles that may call ``method`` (none for a method missing from the matrix)."""
    return RPC_ROLES.get(method, ())
