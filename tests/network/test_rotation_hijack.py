"""Attack (issue 11): a hostile coordinator hijacks an admin's staged key rotation.

The admin stages new operational keys on a node (PrepareKeyRotation) and installs the CA-signed
certificate for them; the admins then sign the roster change naming those keys. If the
coordinator calls PrepareKeyRotation again in between, the staged set the roster will name is
destroyed: when the admin-signed change arrives the node holds none of the keys it names and
stops serving for good (NOT_SERVING, :data:`mpc_node.rotation.KEYS_NOT_HELD`).

Defence under test: a staged set whose certificate is installed is replaced only at an admin's
own call; the coordinator's PrepareKeyRotation is then refused FAILED_PRECONDITION naming
``staged`` and audited, and nothing staged changes.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from mpc_node.rotation import KEYS_NOT_HELD
from mpcnet.common.keystore import load_keystore
from mpcnet.common.rpc import RpcError

from .test_key_rotation import PASS, _entry, _node, _staged_and_certified


def test_the_coordinator_cannot_replace_a_certified_staged_set(tmp_path: Path) -> None:
    n = _node(tmp_path)
    prepared, fingerprint = _staged_and_certified(n)
    with pytest.raises(RpcError) as ei:
        n.rotation.prepare("coordinator", admin=False)
    assert ei.value.code == grpc.StatusCode.FAILED_PRECONDITION and ei.value.message.startswith("staged:")
    assert ("key-rotation-prepared", "refused") in [(e.action, e.outcome) for e in n.host.audit.entries()]
    # the staged set and its certificate are intact: the admin-signed roster change switches the node
    assert n.rotation.paths.tls_cert.exists()
    assert load_keystore(n.rotation.paths.keystore, PASS).identity_public == prepared.identity_public
    assert n.rotation.on_roster(_entry(prepared.identity_public, prepared.encryption_public, fingerprint), "roster")
    assert n.rotation.problem != KEYS_NOT_HELD and n.host.keys.identity_public == prepared.identity_public


def test_without_a_certificate_the_coordinator_may_stage_again(tmp_path: Path) -> None:
    n = _node(tmp_path)
    first = n.rotation.prepare("coordinator", admin=False)
    second = n.rotation.prepare("coordinator", admin=False)  # the admin's certificate would not match: it is refused then
    assert second.identity_public != first.identity_public
    # an admin may replace a certified staged set (abandoning a rotation)
    _staged_and_certified(n)
    assert n.rotation.prepare("admin1", admin=True).identity_public != second.identity_public
