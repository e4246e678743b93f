"""Review 2 (issue 13): ``mpc node add --enrolment REQUEST --cert CERT [--index N]`` attacked.

Findings:
- (fixed, medium) ``--tls-ca`` and ``--genesis`` naming two different CAs: the certificate was
  checked against ``--tls-ca`` only, so a certificate from a CA the nodes do not trust (they trust
  the genesis's CA) was proposed into the roster; the node added could never be dialled. Now
  refused naming ``--tls-ca`` (the two must be one CA).
- (fixed, low) ``--index N`` below an index the roster already used but never used itself (a gap
  left by an earlier ``--index``): the entry was built and the proposal then failed with
  ``entries[i].index: not in canonical (increasing, unique) order``. Now refused at once naming
  ``index`` (it must be above every index the roster enrolled).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from governance.roster import add_node
from mpcnet.client.cli import CliUsage
from mpcnet.client.cli_nodeadd import trusted_ca
from mpcnet.client.nodeenrol import entry_from_request
from mpcnet.common.enrolment import EnrolmentError, issue_for_request, load_request
from mpcnet.common.pki import create_ca
from tests.deploy.test_enrolment import World, built
from tests.deploy.test_node_add import ca_pem, roster_v1, world

__all__ = ["built", "world"]

_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_tls_ca_and_genesis_ca_disagreeing_is_refused(world: World, tmp_path: Path) -> None:
    other = create_ca(tmp_path / "other-ca", "Other CA")
    cert = issue_for_request(other, load_request(world.request("node-4")))
    opts = SimpleNamespace(tls_ca=str(other.cert), genesis=str(world.ex / "genesis.json"), cluster=None)
    with pytest.raises(CliUsage) as e:
        ca = trusted_ca(opts)
        entry_from_request(world.request("node-4"), cert, ca, roster_v1(world))
    assert "--tls-ca" in str(e.value) and "genesis" in str(e.value)
    # the same CA under both options is fine
    same = SimpleNamespace(tls_ca=str(world.ex / "ca.pem"), genesis=str(world.ex / "genesis.json"), cluster=None)
    assert trusted_ca(same) == (world.ex / "ca.pem").read_bytes()


def test_an_index_below_one_already_used_is_refused_naming_index(world: World) -> None:
    r = roster_v1(world)
    entry4, _ = entry_from_request(world.request("node-4"), world.cert("node-4").read_bytes(), ca_pem(world), r)
    far = replace(
        entry4, index=9, name="node-9", endpoint="localhost:17009", tls_fingerprint=bytes(range(32)),
        identity_key=Ed25519PrivateKey.generate().public_key().public_bytes(*_RAW),
        encryption_key=X25519PrivateKey.generate().public_key().public_bytes(*_RAW),
    )
    r2 = add_node(r, far)
    with pytest.raises(EnrolmentError) as e:
        entry_from_request(world.request("node-4"), world.cert("node-4").read_bytes(), ca_pem(world), r2, 5)
    assert e.value.field == "index" and "9" in e.value.reason
    entry, _ = entry_from_request(world.request("node-4"), world.cert("node-4").read_bytes(), ca_pem(world), r2)
    assert entry.index == 10 and add_node(r2, entry).version == r2.version + 1
