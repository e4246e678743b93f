"""Node state changes that wrote the store and appended their audit entry afterwards (or never),
on real processes: each is now ONE node store transaction with its entry (queued in the store's
audit outbox, mpc_node/audit_outbox.py). The node is killed at the test-mode crash point right
after that transaction committed (mpc_node/faults.py, like ``kill -9``: the outbox not flushed),
restarted, and then holds the change, logs its entry exactly once, and its chain verifies.

* ``ban-recorded``: a ban (a failed OT-extension check, node 2 cheating toward node 1). Before,
  the ban was written and the ``ban`` entry appended after the other sessions were aborted: a kill
  between them lost the entry.
* ``session-attestation-stored``: an admin-signed policy attestation carried in a signing
  session's parameters, newer than the one held, is kept. Before, it was stored with no entry.
* ``roster-config-stored``: at start, the config's roster changes the store lacks are stored.
  Before, with no entry.
* ``keygen-stored`` / ``key-activated`` / ``key-discarded``: a DKG's share stored pending, a
  ``CommitKey``, a ``DiscardKey``. Before, each appended its entry after the store write.
* ``key-switch-audited``: an operational key switch (its commit point is a marker file, not a
  store transaction) appended its entry and died before its cleanup: the restart finishes the
  switch and its entry, keyed by the marker's event token, is not appended again. Likewise
  ``key-switch-prepared`` / ``key-switch-certificate``: staged keys / a staged certificate
  written, the node killed before their entry: the next start appends it, once.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import grpc
import pytest

from governance.attestation import PolicyAttestation, PolicyHead, sign_attestation
from governance.policy import DEFAULT_SCOPE
from governance.roster import RosterChange, SignedRosterChange, change_endpoint, rotate_keys, sign_roster_change
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import LocalCluster
from mpcnet.common.pki import certificate_fingerprint, load_certificate, sign_csr
from mpcnet.wire.mpc.v1 import common_pb2, node_pb2
from tests.integration.conftest import coordinator_handles, running_cluster
from tests.integration.govtools import approved_bundle
from tests.integration.relay_util import route
from tests.network.test_install_audit_crash import NODE, _arm, _chain_verifies, _entries, _node_stub, _restart_after_crash

N, T = 3, 2
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def nc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    # policy_max_age_s=0: the test plays the coordinator and signs without attesting first
    with running_cluster(tmp_path_factory, "node-audit-crash-2of3", N, T, fault_files=True, policy_max_age_s=0) as c:
        yield c


@pytest.fixture(scope="module")
def key(nc: LocalCluster) -> node_pb2.DkgResult:
    from tests.integration.relay_util import run

    with coordinator_handles(nc) as nodes:
        res = run(nodes, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"outbox"))
        k = res[1].dkg_result
        for h in nodes.values():
            h.stub.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), timeout=30)
    return k


def _sign_params(nc: LocalCluster, key: node_pb2.DkgResult, signers: tuple[int, ...], attestation: bytes = b"") -> node_pb2.SignParams:
    digest = os.urandom(32)
    rid, bundle = approved_bundle(nc.lay, key.key_id, digest)
    return node_pb2.SignParams(
        key_id=key.key_id, signers=list(signers), digest=digest, request_id=rid, approval_bundle=bundle,
        policy_attestation=attestation,
    )


def test_a_kill_after_a_ban_was_recorded_logs_its_entry_once(nc: LocalCluster, key: node_pb2.DkgResult) -> None:
    faults = nc.lay.dir / "faults"
    (faults / "node-2.json").write_text(json.dumps({"action": "tamper-ote", "protocol": "sign", "round": 2, "receiver": 1}))
    _arm(nc, "ban-recorded")
    try:
        with coordinator_handles(nc) as nodes:
            sid = os.urandom(32)
            req = node_pb2.StartSessionRequest(session_id=sid, sign=_sign_params(nc, key, (1, 2)))
            resps = {i: nodes[i].stub.StartSession(req, timeout=60) for i in (1, 2)}
            inb = route(resps, [1, 2])
            out = {k: nodes[k].stub.Step(node_pb2.StepRequest(session_id=sid, round=1, envelopes=inb[k]), timeout=60) for k in (1, 2)}
            inb = route(out, [1, 2])
            with pytest.raises(grpc.RpcError) as e:  # node 1's check fails: it bans node 2 and dies before it answers
                nodes[1].stub.Step(node_pb2.StepRequest(session_id=sid, round=2, envelopes=inb[1]), timeout=60)
            assert e.value.code() == Code.UNAVAILABLE, e.value
    finally:
        (faults / "node-2.json").unlink(missing_ok=True)  # node 2 stops cheating
    _restart_after_crash(nc)
    bans = [(o, d) for o, d in _entries(nc, "ban") if d.get("key_id") == key.key_id.hex()]
    assert [(o, d.get("peer")) for o, d in bans] == [("recorded", 2)], bans  # once, although the node died before the append
    assert "OT extension consistency check failed" in str(bans[0][1].get("reason"))
    with coordinator_handles(nc) as nodes, pytest.raises(grpc.RpcError) as e:  # the ban survived the kill
        nodes[1].stub.StartSession(
            node_pb2.StartSessionRequest(session_id=os.urandom(32), sign=_sign_params(nc, key, (1, 2))), timeout=60
        )
    assert e.value.code() == Code.PERMISSION_DENIED and "is banned by node-1" in str(e.value.details())
    _chain_verifies(nc)


def test_a_kill_after_a_sessions_attestation_was_stored_logs_its_entry_once(nc: LocalCluster, key: node_pb2.DkgResult) -> None:
    admin_set, initial = nc.lay.governance()
    policy = initial.change.new_policy
    issued = int(time.time() * 1000) + 2000  # newer than any held (a node accepts up to 300 s ahead)
    att = PolicyAttestation.build(admin_set.digest(), issued, "admin1", [PolicyHead(DEFAULT_SCOPE, policy.version, policy.digest())])
    signed = sign_attestation(att, load_identity(nc.lay.dir, "admin1").signing_key).to_bytes()
    _arm(nc, "session-attestation-stored")
    with coordinator_handles(nc) as nodes, pytest.raises(grpc.RpcError) as e:  # node 1 keeps it and dies
        nodes[1].stub.StartSession(
            node_pb2.StartSessionRequest(session_id=os.urandom(32), sign=_sign_params(nc, key, (1, 3), signed)), timeout=60
        )
    assert e.value.code() == Code.UNAVAILABLE, e.value
    _restart_after_crash(nc)
    mine = [(o, d) for o, d in _entries(nc, "policy-attest") if d.get("issued_at_ms") == issued]
    assert [(o, d.get("source")) for o, d in mine] == [("stored", "sign-session")], mine
    assert str(mine[0][1].get("request", "")).startswith("t-")  # the session's request id
    ch, stub = _node_stub(nc, "admin1")
    with ch:
        assert bytes(stub.GetPolicies(node_pb2.GetPoliciesRequest(), timeout=30).policy_attestation) == signed
    _chain_verifies(nc)


def test_a_kill_after_the_configs_roster_changes_were_stored_at_start_logs_their_entry_once(nc: LocalCluster) -> None:
    ch, stub = _node_stub(nc, "admin1")
    with ch:
        history = stub.GetRoster(node_pb2.GetRosterRequest(), timeout=30).signed_changes
    roster = SignedRosterChange.from_bytes(history[-1]).change.new_roster
    entry = roster.entry(3)
    assert entry is not None
    host, port = entry.endpoint.rsplit(":", 1)
    new = change_endpoint(roster, 3, f"{'localhost' if host != 'localhost' else '127.0.0.1'}:{port}")
    admin_set, _ = nc.lay.governance()
    change = RosterChange(new, roster.digest(), admin_set.digest())
    sigs = tuple(sign_roster_change(change, a, load_identity(nc.lay.dir, a).signing_key) for a in ("admin1", "admin2"))
    signed = SignedRosterChange(change, sigs)
    nc.kill(NODE)
    cfg_path = nc.lay.node_config(1)
    cfg = json.loads(cfg_path.read_text())
    cfg["governance"]["roster_history"] = [*cfg["governance"]["roster_history"], signed.to_dict()]  # an operator's edit
    cfg_path.write_text(json.dumps(cfg, indent=2))
    _arm(nc, "roster-config-stored")
    nc.start(NODE, nc.node_env.get(1))  # stores the new change at start and dies before serving
    _restart_after_crash(nc)
    ch, stub = _node_stub(nc, "admin1")
    with ch:
        assert stub.GetRoster(node_pb2.GetRosterRequest(), timeout=30).signed_changes[-1] == signed.to_bytes()
    mine = [(o, d) for o, d in _entries(nc, "roster-install") if d.get("roster_digest") == new.digest().hex()]
    assert [(o, d.get("from_version"), d.get("version")) for o, d in mine] == [("installed-from-config", new.version, new.version)], mine
    _chain_verifies(nc)


def _dkg(nc: LocalCluster, label: bytes) -> node_pb2.DkgResult | None:
    """Run a 2-of-3 DKG as the coordinator; node 2's result (None if a node failed)."""
    from tests.integration.relay_util import run

    with coordinator_handles(nc) as nodes:
        try:
            res = run(nodes, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=label))
        except grpc.RpcError:
            return None
    if not isinstance(res, dict) or not all(isinstance(r, node_pb2.StepResponse) for r in res.values()):
        return None
    return res[2].dkg_result


def _key_status(nc: LocalCluster, key_id: bytes) -> str | None:
    with coordinator_handles(nc) as nodes:
        keys = nodes[1].stub.ListKeys(node_pb2.NodeListKeysRequest(), timeout=30).keys
    found = [k for k in keys if bytes(k.key_id) == key_id]
    return None if not found else common_pb2.KeyStatus.Name(found[0].status)


def test_a_kill_after_a_key_share_was_stored_activated_or_discarded_logs_each_entry_once(nc: LocalCluster) -> None:
    """``keygen-stored`` / ``key-activated`` / ``key-discarded``: a DKG's share stored pending, a
    ``CommitKey`` and a ``DiscardKey`` committed with their entry; before, each appended it after
    the store write (a kill between them lost it)."""
    # a DKG: node 1 stores its share (pending) and dies before it answers the last round
    _arm(nc, "keygen-stored")
    assert _dkg(nc, b"outbox-discarded") is None
    _restart_after_crash(nc)
    stored = [d for o, d in _entries(nc, "keygen") if o == "stored-pending" and d.get("label") == "outbox-discarded"]
    assert len(stored) == 1, stored
    key_id = bytes.fromhex(str(stored[0]["key_id"]))
    assert _key_status(nc, key_id) == "KEY_STATUS_PENDING"
    # the DKG failed (for the coordinator): it discards the pending key; node 1 dies before it answers
    _arm(nc, "key-discarded")
    with coordinator_handles(nc) as nodes, pytest.raises(grpc.RpcError):
        nodes[1].stub.DiscardKey(node_pb2.DiscardKeyRequest(key_id=key_id), timeout=60)
    _restart_after_crash(nc)
    assert _key_status(nc, key_id) is None
    assert [o for o, d in _entries(nc, "key-discard") if d.get("key_id") == key_id.hex()] == ["discarded"]
    # a DKG every node finished: CommitKey activates it on node 1, which dies before it answers
    key = _dkg(nc, b"outbox-activated")
    assert key is not None
    _arm(nc, "key-activated")
    with coordinator_handles(nc) as nodes, pytest.raises(grpc.RpcError):
        nodes[1].stub.CommitKey(node_pb2.CommitKeyRequest(key_id=key.key_id, public_key=key.public_key), timeout=60)
    _restart_after_crash(nc)
    assert _key_status(nc, key.key_id) == "KEY_STATUS_ACTIVE"
    with coordinator_handles(nc) as nodes:  # again (the coordinator retries): nothing changes, nothing is logged
        nodes[1].stub.CommitKey(node_pb2.CommitKeyRequest(key_id=key.key_id, public_key=key.public_key), timeout=60)
    assert [o for o, d in _entries(nc, "key-activate") if d.get("key_id") == key.key_id.hex()] == ["active"]
    assert len([d for o, d in _entries(nc, "keygen") if d.get("key_id") == key.key_id.hex()]) == 1
    _chain_verifies(nc)


def test_a_kill_after_a_key_switch_was_audited_logs_the_switch_once(nc: LocalCluster) -> None:
    """Last (node 1 alone holds the roster naming its new keys: no session with it after this).
    ``key-switch-audited``: node 1 switched to its staged operational keys and appended the
    switch's ``key-rotation`` entry, then died before cleaning up the staged files; the restart
    finishes the switch (mpc_node/rotation.py recover_switch). Before, it audited the switch a
    second time (``switched-at-start``); now the marker's event token makes it once."""
    # key-switch-prepared: the staged keys written, node 1 dies before their entry (and its answer)
    _arm(nc, "key-switch-prepared")
    ch, stub = _node_stub(nc, "admin1")
    with ch, pytest.raises(grpc.RpcError):
        stub.PrepareKeyRotation(node_pb2.PrepareKeyRotationRequest(), timeout=60)
    _restart_after_crash(nc)  # the start audits the staged set
    assert [o for o, _ in _entries(nc, "key-rotation-prepared")] == ["staged-at-start"]
    ch, stub = _node_stub(nc, "admin1")
    with ch:  # the admin got no answer: prepares again (a new staged set, audited once)
        prepared = stub.PrepareKeyRotation(node_pb2.PrepareKeyRotationRequest(), timeout=60)
    pem = sign_csr(nc.lay.ca, prepared.tls_csr_pem)
    fp = certificate_fingerprint(load_certificate(pem))
    # key-switch-certificate: the certificate staged, node 1 dies before its entry
    _arm(nc, "key-switch-certificate")
    ch, stub = _node_stub(nc, "admin1")
    with ch, pytest.raises(grpc.RpcError):
        stub.InstallStagedCertificate(node_pb2.InstallStagedCertificateRequest(certificate_pem=pem), timeout=60)
    _restart_after_crash(nc)
    assert [(o, d.get("tls_fingerprint")) for o, d in _entries(nc, "key-rotation-certificate")] == [("staged-at-start", fp.hex())]
    mine = [o for o, d in _entries(nc, "key-rotation-prepared") if d.get("identity_public") == prepared.identity_public.hex()]
    assert mine == ["staged"]  # not repeated by the restart
    ch, stub = _node_stub(nc, "admin1")
    with ch:
        history = stub.GetRoster(node_pb2.GetRosterRequest(), timeout=30).signed_changes
    roster = SignedRosterChange.from_bytes(history[-1]).change.new_roster
    new = rotate_keys(roster, 1, identity_key=prepared.identity_public, encryption_key=prepared.encryption_public, tls_fingerprint=fp)
    admin_set, _ = nc.lay.governance()
    change = RosterChange(new, roster.digest(), admin_set.digest())
    sigs = tuple(sign_roster_change(change, a, load_identity(nc.lay.dir, a).signing_key) for a in ("admin1", "admin2"))
    signed = SignedRosterChange(change, sigs).to_bytes()
    _arm(nc, "key-switch-audited")
    ch, stub = _node_stub(nc, "admin1")
    with ch, pytest.raises(grpc.RpcError):  # node 1 installs it, switches, audits the switch and dies
        stub.InstallRosterChange(node_pb2.InstallRosterChangeRequest(signed_change=signed), timeout=60)
    assert (nc.lay.node_dir(1) / "rotation" / "switching.json").exists()  # died before the cleanup
    _restart_after_crash(nc)  # recover_switch finishes it at start
    assert not (nc.lay.node_dir(1) / "rotation" / "switching.json").exists()
    with coordinator_handles(nc) as nodes:
        assert nodes[1].stub.GetInfo(node_pb2.GetInfoRequest(), timeout=30).identity_public == prepared.identity_public
    mine = [(o, d) for o, d in _entries(nc, "key-rotation") if d.get("identity_public") == prepared.identity_public.hex()]
    assert [o for o, _ in mine] == ["switched"], mine  # once, although the restart finished the switch
    _chain_verifies(nc)
