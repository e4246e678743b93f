"""The 'mpc' backup and recovery commands (issue 12, design section 6) against the in-memory
coordinator of tests/client/backup_fake.py: officers keygen/set/show, backup list/export/verify,
drill, restore, contribute (and everything it refuses before decrypting), break-glass export and
export-key, node replace, lifecycle show/approve of recovery proposals and 'mpc status'."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.recovery import SignedRecoveryOrder
from mpcnet.client import cli
from mpcnet.client.identities import Identity
from mpcnet.common import agekeys
from tests.governance.gov_util import admin_set

from .backup_fake import KEY_ID, OFFICERS, RecoveryFake, officer_keys, signed_config
from .lifecycle_fake import FakeRpcError, admin_client, entry

ADMINS = {"admin1": "ada", "admin2": "bob", "admin3": "cyd"}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> RecoveryFake:
    f = RecoveryFake()

    def client(ap: object, opts: cli.GlobalOpts) -> object:
        name = opts.as_name or "admin1"
        c = admin_client(f, ADMINS.get(name, "ada"))
        if name not in ADMINS:  # an officer: its own name, no admin key, only the officer's RPCs
            c.identity = Identity(name, "officer", None, Ed25519PrivateKey.generate())  # type: ignore[arg-type]
            c._stub = OfficerStub(f)  # type: ignore[assignment]
        c.close = lambda: None  # type: ignore[method-assign]
        return c

    monkeypatch.setattr(cli, "_client", client)
    return f


# what the coordinator lets role "officer" call (coordinator/roles.py)
OFFICER_RPCS = {"GetRecoveryConfig", "ExportBackup", "ListBackups", "StartDrill", "SubmitRecoveryPieces", "GetCeremony",
                "ListCeremonies", "GetRoster", "ClusterStatus"}


class OfficerStub:
    """The fake coordinator as an officer sees it: PERMISSION_DENIED outside OFFICER_RPCS."""

    def __init__(self, fake: RecoveryFake) -> None:
        self.fake = fake

    def __getattr__(self, name: str) -> Any:
        if name in OFFICER_RPCS:
            return getattr(self.fake, name)

        def denied(req: Any, timeout: float | None = None) -> Any:
            raise FakeRpcError(grpc.StatusCode.PERMISSION_DENIED, f"role officer may not call {name}")

        return denied


@pytest.fixture
def officers(tmp_path: Path) -> dict[str, Path]:
    """officer1..3's identity files, made with 'mpc officer keygen'."""
    out = {}
    for name in OFFICERS:
        path = tmp_path / f"{name}.age"
        code, _, _ = run(name, "officer", "keygen", "--out", str(path))
        assert code == 0
        out[name] = path
    return out


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Path:
    d = tmp_path / "cluster"
    d.mkdir()
    (d / "cluster.json").write_text(json.dumps({"admin_set": admin_set().to_dict()}))
    return d


def run(who: str, *argv: str, cluster: str = "C") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["--cluster", cluster, "--as", who, *argv])
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def configure(officers: dict[str, Path]) -> None:
    """admin1 proposes officer1..3 (2-of-3, export quorum 3), admin2 approves."""
    args = []
    for name, path in officers.items():
        args += ["--officer", f"{name}={recipient(path)}"]
    code, out, err = run("admin1", "recovery", "officers", "set", *args, "--quorum", "2", "--export-quorum", "3", "--drill-days", "30",
                         "--json")
    assert code == 0, err
    p = json.loads(out)["proposal"]
    assert p["kind"] == "recovery-config" and p["state"] == "pending"
    assert f"lifecycle approve {p['proposal_id']} --expect-digest {p['digest']}" in err
    code, out, err = run("admin2", "lifecycle", "show", p["proposal_id"])
    assert code == 0 and "2-of-3 officers, export quorum 3 admins" in out and "every 30 days" in out
    # the approving admin compares the recipients with the age1... texts the officers gave
    assert all(recipient(path) in out for path in officers.values()), out
    code, out, err = run("admin2", "lifecycle", "approve", p["proposal_id"], "--expect-digest", p["digest"], "--json")
    assert code == 0 and json.loads(out)["proposal"]["state"] == "applied", err


def recipient(path: Path) -> str:
    priv = agekeys.read_identity_file(path)
    from mpcnet.client.backup import x25519_public

    return agekeys.recipient_text(x25519_public(priv))


def test_officer_keygen_writes_a_0600_identity_and_never_overwrites_it(tmp_path: Path) -> None:
    path = tmp_path / "me.age"
    code, out, err = run("officer1", "officer", "keygen", "--out", str(path), "--json")
    assert code == 0 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(out)["recipient"] == recipient(path) and "AGE-SECRET-KEY" not in out + err
    before = path.read_bytes()
    code, _, err = run("officer1", "officer", "keygen", "--out", str(path))
    assert code == 2 and "exists" in err and path.read_bytes() == before


def test_officers_set_show_and_the_status_rows(fake: RecoveryFake, officers: dict[str, Path]) -> None:
    code, out, _ = run("admin1", "status")
    assert code == 0 and "no officers configured" in out
    configure(officers)
    code, out, _ = run("officer1", "recovery", "officers", "show", "--json")
    d = json.loads(out)
    assert code == 0 and d["version"] == 1 and [o["name"] for o in d["officers"]] == list(OFFICERS)
    assert d["officers"][0]["recipient"] == recipient(officers["officer1"])
    code, out, _ = run("admin1", "status")
    assert code == 0 and "config version 1" in out and f"backup {KEY_ID.hex()[:16]}" in out and "DRILL OVERDUE" in out
    code, out, _ = run("admin1", "status", "--json")
    assert json.loads(out)["backups"][0]["backed_up"] is True


def test_bad_officer_options_are_usage_errors(fake: RecoveryFake, officers: dict[str, Path]) -> None:
    code, _, err = run("admin1", "recovery", "officers", "set", "--officer", "x=notage", "--quorum", "2", "--export-quorum", "3")
    assert code == 2 and "--officer[1]" in err
    r = recipient(officers["officer1"])
    code, _, err = run("admin1", "recovery", "officers", "set", "--officer", f"a={r}", "--officer", f"b={r}", "--quorum", "2",
                       "--export-quorum", "3")
    assert code == 1 and "INVALID_ARGUMENT" in err and "recipient" in err and "ProposeRecoveryConfig" not in fake.calls
    code, _, err = run("admin1", "recovery", "officers", "set", "--officer", f"a={r}", "--officer",
                       f"b={recipient(officers['officer2'])}", "--quorum", "2", "--export-quorum", "2")
    assert code == 1 and "export_quorum" in err  # not more than the admin quorum 2


def test_backup_export_and_offline_verify_with_an_officer_key(fake: RecoveryFake, officers: dict[str, Path], tmp_path: Path,
                                                              cluster_dir: Path) -> None:
    configure(officers)
    code, out, _ = run("admin1", "backup", "list")
    assert code == 0 and "current" in out and "epoch 0" in out
    listed = out.split()[0]  # the full digest: what 'backup export --bundle-digest' takes
    code, _, err = run("officer1", "backup", "export", "--key", KEY_ID.hex(), "--bundle-digest", listed, "--out", str(tmp_path / "l"))
    assert code == 0, err
    out_file = tmp_path / "bundle.mpcb"
    code, out, err = run("officer1", "backup", "export", "--key", KEY_ID.hex(), "--out", str(out_file), "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["verified"]["committee"] == [1, 2, 3, 4, 5] and d["bundle_digest"] == fake.bundles[-1][0].hex()
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600 and out_file.read_bytes() == fake.bundles[-1][1]
    code, out, err = run("officer2", "backup", "verify", "--bundle", str(out_file), "--recovery-key", str(officers["officer2"]),
                         cluster=str(cluster_dir))
    assert code == 0, err
    assert "OK: every piece decrypts and matches" in out


def test_a_tampered_piece_is_named_by_its_officer_and_a_tampered_commitment_by_its_node(
    fake: RecoveryFake, officers: dict[str, Path], tmp_path: Path, cluster_dir: Path,
) -> None:
    configure(officers)
    bad = tmp_path / "bad-piece"
    bad.write_bytes(fake.make_bundle(tamper="piece"))
    code, out, _ = run("officer2", "backup", "verify", "--bundle", str(bad), "--recovery-key", str(officers["officer2"]),
                       cluster=str(cluster_dir))
    assert code == 0  # officer 2's pieces are fine
    code, out, err = run("officer1", "backup", "verify", "--bundle", str(bad), "--recovery-key", str(officers["officer1"]),
                         cluster=str(cluster_dir), )
    assert code == 1 and "FAILED" in out
    bad.write_bytes(fake.make_bundle(tamper="commitment"))
    code, out, err = run("officer1", "backup", "verify", "--bundle", str(bad), cluster=str(cluster_dir))
    assert code == 1 and "node 3" in err
    code, _, err = run("officer1", "backup", "export", "--key", KEY_ID.hex(), "--out", str(tmp_path / "x"))
    assert code == 1 and "DATA_LOSS" in err and "node 3" in err and not (tmp_path / "x").exists()


def test_drill_with_two_officer_keys_reports_per_node_and_per_officer(fake: RecoveryFake, officers: dict[str, Path]) -> None:
    configure(officers)
    code, out, err = run("admin1", "backup", "drill", "--key", KEY_ID.hex(), "--recovery-key", str(officers["officer1"]),
                         "--recovery-key", str(officers["officer3"]), "--json")
    assert code == 0, err
    c = json.loads(out)["ceremony"]
    assert c["state"] == "done" and c["officers"] == ["officer1", "officer3"]
    assert [t["state"] for t in c["targets"]] == ["ok"] * 5
    assert all({o["name"]: o["outcome"] for o in t["outcomes"]} == {"officer1": "ok", "officer2": "missing", "officer3": "ok"}
               for t in c["targets"])
    code, out, _ = run("admin1", "recovery", "status", c["ceremony_id"])
    assert code == 0 and "node 4: OK" in out and "ok for every share" in out and "gave no pieces" in out
    code, out, _ = run("admin1", "status")
    assert "DRILL OVERDUE" not in out and "last drill" in out


def test_one_officer_key_starts_the_drill_and_says_what_is_missing(fake: RecoveryFake, officers: dict[str, Path]) -> None:
    configure(officers)
    code, out, err = run("officer2", "backup", "drill", "--key", KEY_ID.hex(), "--recovery-key", str(officers["officer2"]))
    assert code == 0 and "needs 1 more officer" in err and "COLLECTING" in out
    cid = next(iter(fake.ceremonies)).hex()
    code, out, _ = run("officer1", "recovery", "contribute", "--ceremony", cid, "--recovery-key", str(officers["officer1"]))
    assert code == 0 and "DONE" in out


def _restore(fake: RecoveryFake, officers: dict[str, Path]) -> str:
    configure(officers)
    code, out, err = run("admin1", "recovery", "restore", "--key", KEY_ID.hex(), "--nodes", "3,4", "--reason", "disk \x1b[2J lost",
                         "--json")
    assert code == 2 and "reason" in err  # caller text: control characters refused
    code, out, err = run("admin1", "recovery", "restore", "--key", KEY_ID.hex(), "--nodes", "4,3", "--reason", "region outage", "--json")
    assert code == 0, err
    p = json.loads(out)["proposal"]
    order = p["recovery_order"]
    assert p["kind"] == "recovery-order" and [t["node"] for t in order["targets"]] == [3, 4]
    assert abs(order["expires_ms"] - (time.time() * 1000 + 86_400_000)) < 600_000  # --valid-for: 24 h by default
    assert f"recovery contribute --ceremony {order['order_id']}" in err
    code, out, _ = run("admin2", "lifecycle", "show", p["proposal_id"])
    assert code == 0 and "share 3 -> node 3" in out and "refresh epoch 0 -> 1" in out and "region outage" in out
    code, out, err = run("admin2", "lifecycle", "approve", p["proposal_id"], "--expect-digest", p["digest"])
    assert code == 0 and f"mpc recovery contribute --ceremony {order['order_id']}" in err, err
    assert "waiting for key operation" not in err  # the follow-up runs after the officers' pieces
    return str(order["order_id"])


def test_orders_expire_after_valid_for(fake: RecoveryFake, officers: dict[str, Path], tmp_path: Path) -> None:
    configure(officers)
    code, out, err = run("admin1", "recovery", "restore", "--key", KEY_ID.hex(), "--nodes", "3", "--reason", "r", "--valid-for", "3600",
                         "--json")
    assert code == 0, err
    order = json.loads(out)["proposal"]["recovery_order"]
    assert abs(order["expires_ms"] - (time.time() * 1000 + 3_600_000)) < 600_000
    code, out, _ = run("admin2", "lifecycle", "show", json.loads(out)["proposal"]["proposal_id"])
    assert code == 0 and "expires" in out and "UTC" in out
    for bad in ("59", "2592001", "1h", "-5"):
        code, _, err = run("admin1", "recovery", "restore", "--key", KEY_ID.hex(), "--nodes", "3", "--reason", "r", "--valid-for", bad)
        assert code == 2 and "--valid-for" in err, (bad, err)
    offline = tmp_path / "offline.age"
    assert run("x", "officer", "keygen", "--out", str(offline))[0] == 0
    code, out, err = run("admin1", "recovery", "export-order", "--key", KEY_ID.hex(), "--recipient", recipient(offline),
                         "--reason", "migrating away", "--valid-for", "600", "--json")
    assert code == 0, err
    assert abs(json.loads(out)["proposal"]["recovery_order"]["expires_ms"] - (time.time() * 1000 + 600_000)) < 300_000


def test_restore_order_then_officers_contribute(fake: RecoveryFake, officers: dict[str, Path]) -> None:
    cid = _restore(fake, officers)
    code, out, err = run("officer1", "recovery", "contribute", "--ceremony", cid, "--recovery-key", str(officers["officer1"]))
    assert code == 0 and "COLLECTING" in out, err
    code, out, err = run("officer2", "recovery", "contribute", "--ceremony", cid, "--recovery-key", str(officers["officer2"]), "--json")
    c = json.loads(out)["ceremony"]
    assert code == 0 and c["state"] == "done" and [t["node"] for t in c["targets"]] == [3, 4]
    # 'recovery status ID' says how the follow-up went (README: "restored nodes, each officer's outcome, the follow-up")
    code, out, err = run("admin1", "recovery", "status", cid)
    assert code == 0 and "refresh epoch 0 -> 1: DONE" in out, (out, err)
    code, out, err = run("admin1", "recovery", "status", cid, "--json")
    assert code == 0 and json.loads(out)["follow_up"]["authorized_by"] == "recovery-order"
    code, out, err = run("officer1", "recovery", "status", cid)  # an officer may not read key operations: says where to look
    assert code == 0 and "mpc key operations KEY" in out, (out, err)


def test_contribute_refuses_before_decrypting_anything(fake: RecoveryFake, officers: dict[str, Path]) -> None:
    cid = _restore(fake, officers)
    ceremony = fake.ceremonies[bytes.fromhex(cid)]
    submits = lambda: fake.calls.count("SubmitRecoveryPieces")  # noqa: E731

    # another officer's key than the caller's
    code, _, err = run("officer1", "recovery", "contribute", "--ceremony", cid, "--recovery-key", str(officers["officer2"]))
    assert code == 1 and "officer 'officer2'" in err and "you act as 'officer1'" in err and submits() == 0
    # a key that is no officer's
    stranger = officers["officer1"].parent / "stranger.age"
    assert run("x", "officer", "keygen", "--out", str(stranger))[0] == 0
    code, _, err = run("officer1", "recovery", "contribute", "--ceremony", cid, "--recovery-key", str(stranger))
    assert code == 1 and "not the key of an officer" in err and submits() == 0
    # an officer signs nothing here: the refusal says what she cares about
    assert "nothing was decrypted or sent" in err and "nothing was signed" not in err
    # the coordinator swaps node 4's encryption key for its own
    lie = ceremony.__deepcopy__()
    lie.targets[1].recipient = agekeys.generate()[1]
    fake.evil["GetCeremony"] = lambda c: lie
    code, _, err = run("officer1", "recovery", "contribute", "--ceremony", cid, "--recovery-key", str(officers["officer1"]))
    assert code == 1 and "not node 4's encryption key" in err and submits() == 0
    # an order with one admin signature only (no quorum)
    signed = SignedRecoveryOrder.from_bytes(bytes(ceremony.signed_order))
    lie = ceremony.__deepcopy__()
    lie.signed_order = SignedRecoveryOrder(signed.order, signed.signatures[:1]).to_bytes()
    fake.evil["GetCeremony"] = lambda c: lie
    code, _, err = run("officer1", "recovery", "contribute", "--ceremony", cid, "--recovery-key", str(officers["officer1"]))
    assert code == 1 and "order.signatures" in err and "nothing was signed" not in err.split("order.")[0] and submits() == 0
    # another bundle than the order's
    fake.evil.clear()
    fake.make_bundle()
    fake.evil["GetCeremony"] = lambda c: c
    fake.evil["ExportBackup"] = _appended
    code, _, err = run("officer1", "recovery", "contribute", "--ceremony", cid, "--recovery-key", str(officers["officer1"]))
    assert code == 1 and "bundle_digest" in err and submits() == 0


def _appended(r: Any) -> Any:
    """A BackupInfo whose bundle bytes do not hash to its digest."""
    out = type(r)()
    out.CopyFrom(r)
    out.bundle = bytes(r.bundle) + b"x"
    return out


def test_break_glass_export_needs_three_admins_and_rebuilds_the_key_offline(
    fake: RecoveryFake, officers: dict[str, Path], tmp_path: Path,
) -> None:
    configure(officers)
    offline = tmp_path / "offline.age"
    assert run("x", "officer", "keygen", "--out", str(offline))[0] == 0
    code, out, err = run("admin1", "recovery", "export-order", "--key", KEY_ID.hex(), "--recipient", recipient(offline),
                         "--reason", "migrating away", "--json")
    assert code == 0 and "BREAK-GLASS" in err, err
    p = json.loads(out)["proposal"]
    assert p["admin_quorum"] == 3
    code, out, _ = run("admin2", "lifecycle", "list")
    assert "BREAK-GLASS EXPORT" in out
    code, out, _ = run("admin2", "lifecycle", "show", p["proposal_id"])
    assert "EXPORT OF THE WHOLE PRIVATE KEY" in out and recipient(offline) in out  # the age1... text the admins were given
    code, out, _ = run("admin2", "lifecycle", "approve", p["proposal_id"], "--json")
    assert code == 0 and json.loads(out)["proposal"]["state"] == "pending"  # 2 of the 3 the export quorum needs
    code, out, _ = run("admin3", "lifecycle", "approve", p["proposal_id"], "--json")
    assert code == 0 and json.loads(out)["proposal"]["state"] == "applied"
    cid = p["recovery_order"]["order_id"]
    for name in ("officer2", "officer3"):
        code, out, err = run(name, "recovery", "contribute", "--ceremony", cid, "--recovery-key", str(officers[name]))
        assert code == 0, err
    key_file = tmp_path / "key.pem"
    code, _, err = run("admin1", "recovery", "export-key", "--ceremony", cid, "--identity", str(officers["officer1"]),
                       "--out", str(key_file))
    assert code == 1 and "not the order's off-line recipient" in err and not key_file.exists()
    code, out, err = run("admin1", "recovery", "export-key", "--ceremony", cid, "--identity", str(offline), "--out", str(key_file))
    assert code == 0, err
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and "matches the public key" in out
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.private_numbers().private_value == 12345
    code, _, err = run("admin1", "recovery", "export-key", "--ceremony", cid, "--identity", str(offline), "--out", str(key_file))
    assert code == 2 and "exists" in err


def test_node_replace_proposes_the_rotation_to_the_enrolment_keys(fake: RecoveryFake, tmp_path: Path) -> None:
    f = tmp_path / "node-3.json"
    d = entry(3, seed=33).to_dict()
    d["key_version"] = 2
    f.write_text(json.dumps(d))
    code, out, err = run("admin1", "node", "replace", "3", "--enrolment", str(f), "--json")
    assert code == 0, err
    new = json.loads(out)["proposal"]["roster"]
    e3 = next(e for e in new["entries"] if e["index"] == 3)
    assert e3["identity_key"] == d["identity_key"] and e3["key_version"] == 2
    code, _, err = run("admin1", "node", "replace", "4", "--enrolment", str(f))
    assert code == 2 and "is for node 3" in err
    same = tmp_path / "same.json"
    same.write_text(json.dumps(entry(3).to_dict()))
    code, _, err = run("admin1", "node", "replace", "3", "--enrolment", str(same))
    assert code == 1 and "reuses a key" in err


def test_the_sdk_refuses_a_rolled_back_recovery_configuration(fake: RecoveryFake) -> None:
    keys = officer_keys()
    first = signed_config(fake.admins.digest(), keys)
    fake.config_history = [first, signed_config(fake.admins.digest(), keys, version=2, prev=first.change.config)]
    c = admin_client(fake)
    assert c.recovery_config().config.version == 2  # type: ignore[union-attr]
    fake.config_history = fake.config_history[:1]
    with pytest.raises(cli.MpcError) as e:
        c.recovery_config()
    assert "does not extend version 2" in e.value.message


def test_officer_keygen_refuses_hostile_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for value in ("", "a\x00b", "x" * 100_000, str(tmp_path), str(tmp_path / "no" / "dir" / "k.age")):
        code, out, err = run("officer1", "officer", "keygen", "--out", value)
        assert code == 2 and err.count("\n") == 1 and err.startswith("mpc: error: ") and "--out" in err and not out, err[:300]
    assert list(tmp_path.iterdir()) == []


def test_a_coordinators_text_in_a_ceremony_is_shown_escaped(fake: RecoveryFake, officers: dict[str, Path]) -> None:
    cid = _restore(fake, officers)

    def hostile(c: Any) -> Any:
        out = type(c)()
        out.CopyFrom(c)
        out.error = "boom\x1b[2J\nfake row"
        out.targets[0].error = "\u202egone"
        out.targets[0].state = "failed"
        return out

    fake.evil["GetCeremony"] = hostile
    code, out, _ = run("admin1", "recovery", "status", cid)
    assert code == 1 and "\x1b" not in out and "\\x1b[2J\\nfake row" in out and "\u202e" not in out
    assert all(line.isprintable() for line in out.splitlines())


def test_export_key_rebuilds_the_key_fully_offline_from_files(
    fake: RecoveryFake, officers: dict[str, Path], tmp_path: Path, cluster_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(officers)
    offline = tmp_path / "offline.age"
    assert run("x", "officer", "keygen", "--out", str(offline))[0] == 0
    code, out, err = run("admin1", "recovery", "export-order", "--key", KEY_ID.hex(), "--recipient", recipient(offline),
                         "--reason", "migrating away", "--json")
    p = json.loads(out)["proposal"]
    for admin in ("admin2", "admin3"):
        assert run(admin, "lifecycle", "approve", p["proposal_id"])[0] == 0
    cid = p["recovery_order"]["order_id"]
    for name in ("officer1", "officer3"):
        assert run(name, "recovery", "contribute", "--ceremony", cid, "--recovery-key", str(officers[name]))[0] == 0
    # on the on-line side: the bundle the order names and the pieces file (pieces + signed order)
    bundle, pieces = tmp_path / "bundle.mpcb", tmp_path / "pieces.json"
    digest = p["recovery_order"]["bundle_digest"]
    assert run("officer1", "backup", "export", "--key", KEY_ID.hex(), "--bundle-digest", digest, "--out", str(bundle))[0] == 0
    code, out, err = run("officer1", "recovery", "pieces", "--ceremony", cid, "--out", str(pieces), "--json")
    assert code == 0 and json.loads(out)["pieces"] == 6, err  # 3 shares (the threshold) x 2 officers
    doc = json.loads(pieces.read_text())
    assert doc["format"] == "mpcnet-export-pieces-v1" and doc["ceremony_id"] == cid

    # the off-line machine: no coordinator at all
    def no_network(*a: object) -> object:
        raise AssertionError("the off-line export-key called the coordinator")

    monkeypatch.setattr(cli, "_client", no_network)
    key_file = tmp_path / "key.pem"
    base = ["recovery", "export-key", "--bundle", str(bundle), "--pieces", str(pieces), "--identity"]
    code, _, err = run("x", *base, str(officers["officer2"]), "--out", str(key_file), cluster=str(cluster_dir))
    assert code == 1 and "not the order's off-line recipient" in err and not key_file.exists()
    other = tmp_path / "other.mpcb"
    other.write_bytes(fake.make_bundle())
    code, _, err = run("x", "recovery", "export-key", "--bundle", str(other), "--pieces", str(pieces), "--identity", str(offline),
                       "--out", str(key_file), cluster=str(cluster_dir))
    assert code == 2 and "--bundle: is not the bundle the pieces file names" in err and not key_file.exists()
    assert f"--bundle-digest {digest} --out FILE" in err  # says which bundle to bring, and how
    forged = dict(doc, bundle_digest=fake.bundles[-1][0].hex())  # the pieces file is edited to name the other bundle
    forged_file = tmp_path / "forged.json"
    forged_file.write_text(json.dumps(forged))
    code, _, err = run("x", "recovery", "export-key", "--bundle", str(other), "--pieces", str(forged_file), "--identity",
                       str(offline), "--out", str(key_file), cluster=str(cluster_dir))
    assert code == 1 and "order.bundle_digest" in err and not key_file.exists()
    code, _, err = run("x", "recovery", "export-key", "--ceremony", cid, "--bundle", str(bundle), "--identity", str(offline),
                       "--out", str(key_file), cluster=str(cluster_dir))
    assert code == 2 and "not both" in err
    order_file = tmp_path / "order.bin"
    order_file.write_bytes(bytes.fromhex(doc["signed_order"]))
    code, out, err = run("x", *base, str(offline), "--order", str(order_file), "--out", str(key_file), "--json",
                         cluster=str(cluster_dir))
    assert code == 0, err
    assert json.loads(out)["offline"] is True and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.private_numbers().private_value == 12345


def test_export_key_offline_refuses_malformed_pieces_files_naming_the_field(tmp_path: Path, cluster_dir: Path) -> None:
    identity, bundle = tmp_path / "id.age", tmp_path / "b.mpcb"
    assert run("x", "officer", "keygen", "--out", str(identity))[0] == 0
    bundle.write_bytes(b"MPCNET-BACKUP-BUNDLE\n")
    good = {"format": "mpcnet-export-pieces-v1", "ceremony_id": "00" * 16, "bundle_digest": "11" * 32, "pieces": []}
    cases: list[tuple[Any, str]] = [
        ([], "pieces.format"), ({**good, "format": "x"}, "pieces.format"), ({**good, "ceremony_id": "0" * 31}, "pieces.ceremony_id"),
        ({**good, "bundle_digest": "AA" * 32}, "pieces.bundle_digest"), ({**good, "signed_order": "zz"}, "pieces.signed_order"),
        ({**good, "signed_order": "00"}, "pieces.signed_order"), ({**good, "pieces": {}}, "pieces.pieces"),
        ({**good, "pieces": [{"share_index": True, "ciphertext": ""}]}, "pieces.pieces[0].share_index"),
        ({**good, "pieces": [{"share_index": 1, "ciphertext": "\u202e"}]}, "pieces.pieces[0].ciphertext"),
        (good, "--order"),  # no order anywhere
    ]
    for doc, field in cases:
        f = tmp_path / "p.json"
        f.write_text(json.dumps(doc))
        code, out, err = run("x", "recovery", "export-key", "--bundle", str(bundle), "--pieces", str(f), "--identity", str(identity),
                             "--out", str(tmp_path / "k.pem"), cluster=str(cluster_dir))
        assert code in (1, 2) and field in err and err.count("\n") == 1 and err[:-1].isprintable(), (doc, err)
        assert not (tmp_path / "k.pem").exists() and not out


def test_backup_piece_writes_an_age_file_the_officer_opens_and_names_bad_options(
    fake: RecoveryFake, officers: dict[str, Path], tmp_path: Path, cluster_dir: Path,
) -> None:
    """The README's 'age -d -i officer1.agekey piece.age': 'backup piece' copies one piece out of a
    verified bundle; the officer's own identity opens it (here through pyrage, the library age's
    format comes from), another officer's does not; bad options are usage errors naming them."""
    configure(officers)
    bundle = tmp_path / "bundle.mpcb"
    assert run("officer1", "backup", "export", "--key", KEY_ID.hex(), "--out", str(bundle))[0] == 0
    piece = tmp_path / "piece.age"
    code, out, err = run("officer2", "backup", "piece", "--bundle", str(bundle), "--share", "3", "--officer", "officer2",
                         "--out", str(piece), "--json", cluster=str(cluster_dir))
    assert code == 0, err
    d = json.loads(out)
    assert d["share_index"] == 3 and d["officer"] == {"index": 2, "name": "officer2"}
    data = piece.read_bytes()
    assert data.startswith(b"age-encryption.org/v1\n")
    plain = agekeys.decrypt(agekeys.read_identity_file(officers["officer2"]), data)
    from governance.recovery import BackupPiece

    p = BackupPiece.from_bytes(plain)
    assert (p.share_index, p.officer_index, p.key_id) == (3, 2, KEY_ID)
    with pytest.raises(agekeys.AgeKeyError):
        agekeys.decrypt(agekeys.read_identity_file(officers["officer1"]), data)
    age = shutil.which("age")
    if age is not None:  # the real tool, as the README says (scripts/test installs Debian's age)
        r = subprocess.run([age, "-d", "-i", str(officers["officer2"]), str(piece)], capture_output=True, timeout=30, check=False)
        assert r.returncode == 0 and r.stdout == plain, r.stderr
    code, out, err = run("officer2", "backup", "piece", "--bundle", str(bundle), "--share", "1", "--officer", "1",
                         "--out", str(tmp_path / "p1.age"), cluster=str(cluster_dir))
    assert code == 0 and "age -d -i IDENTITY_FILE" in out, err
    for argv, field in ((["--share", "9", "--officer", "1"], "--share: 9"), (["--share", "1", "--officer", "4"], "--officer: 4"),
                        (["--share", "1", "--officer", "nobody"], "--officer: 'nobody'")):
        code, _, err = run("officer2", "backup", "piece", "--bundle", str(bundle), *argv, "--out", str(tmp_path / "x.age"),
                           cluster=str(cluster_dir))
        assert code == 2 and field in err and not (tmp_path / "x.age").exists(), err
    code, _, err = run("officer2", "backup", "piece", "--bundle", str(bundle), "--share", "3", "--officer", "officer2",
                       "--out", str(piece), cluster=str(cluster_dir))
    assert code == 2 and "exists (not overwritten)" in err and piece.read_bytes() == data


def test_restore_warns_about_a_node_that_was_never_replaced(fake: RecoveryFake, officers: dict[str, Path], tmp_path: Path) -> None:
    """A newcomer's typo in --nodes (a live node) would give a ceremony the node refuses: the
    proposal warns, naming the node and the command that replaces it."""
    configure(officers)
    f = tmp_path / "node-3.json"
    d = entry(3, seed=33).to_dict()
    d["key_version"] = 2
    f.write_text(json.dumps(d))
    code, out, err = run("admin1", "node", "replace", "3", "--enrolment", str(f), "--json")
    assert code == 0, err
    p = json.loads(out)["proposal"]
    assert run("admin2", "lifecycle", "approve", p["proposal_id"], "--expect-digest", p["digest"])[0] == 0
    code, out, err = run("admin1", "recovery", "restore", "--key", KEY_ID.hex(), "--nodes", "3,4", "--reason", "r", "--json")
    assert code == 0, err
    assert "warning: node 4 still has the identity key" in err and "mpc node replace 4" in err
    assert "node 3 still" not in err  # replaced: its roster identity key is not the one that signed its part
