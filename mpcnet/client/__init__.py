"""The client side (the top layer): the typed client SDK (:mod:`mpcnet.client.sdk`), the ``mpc``
CLI (:mod:`mpcnet.client.cli`), client identities (:mod:`mpcnet.client.identities`) and the
client-side verification of every component's audit log (:mod:`mpcnet.client.audit`); the key
lifecycle (roster, roster changes, refresh, reshare, node key rotation) is
:mod:`mpcnet.client.lifecycle`, and backup, recovery and drills (issue 12) are
:mod:`mpcnet.client.backup`, both mixed into :class:`MpcClient`.

Schnorr keys (FROST, issue 16: ed25519 and schnorr-secp256k1-bip340; messages, Taproot roots,
independent signature checks) are :mod:`mpcnet.client.schnorr`, their addresses
:mod:`mpcnet.common.addresses`. The wallet formats of keys and signatures (validated SEC1 points, EIP-55 addresses, PEM, compact
and Ethereum signatures) are :mod:`mpcnet.client.formats`; :class:`MpcError` lives in
:mod:`mpcnet.client.errors`.

The SDK's public names are re-exported here, so users' scripts keep importing
``from mpcnet.client import MpcClient, SigningTeam``. The servers never import this package
(tests/test_import_contract.py)."""

from mpcnet.client.sdk import (
    APPROVE_CLOCK_SLACK_MS,
    RELAYED,
    SIGN_STATES,
    TEAM_DECIDE_WAIT_MS,
    TERMINAL_STATES,
    ApprovalView,
    AuditLogCopy,
    BackupView,
    CeremonyView,
    Key,
    KeyOperationView,
    LifecycleProposalView,
    MpcClient,
    MpcError,
    NodeState,
    PolicyView,
    PoolView,
    PresignStatus,
    Proposal,
    RecoveryConfigView,
    RequestInfo,
    RosterView,
    SchnorrSignature,
    SignatureResult,
    SigningTeam,
    SignRequest,
    error_of,
    ethereum_address,
    parse_uint,
    path_text,
    to_path,
)

__all__ = [
    "APPROVE_CLOCK_SLACK_MS",
    "RELAYED",
    "SIGN_STATES",
    "TEAM_DECIDE_WAIT_MS",
    "TERMINAL_STATES",
    "ApprovalView",
    "AuditLogCopy",
    "BackupView",
    "CeremonyView",
    "Key",
    "KeyOperationView",
    "LifecycleProposalView",
    "MpcClient",
    "MpcError",
    "NodeState",
    "PolicyView",
    "PoolView",
    "PresignStatus",
    "Proposal",
    "RecoveryConfigView",
    "RequestInfo",
    "RosterView",
    "SchnorrSignature",
    "SignRequest",
    "SignatureResult",
    "SigningTeam",
    "error_of",
    "ethereum_address",
    "parse_uint",
    "path_text",
    "to_path",
]
