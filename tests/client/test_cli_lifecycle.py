"""The 'mpc' key lifecycle commands (issue 11 item 6) against the in-memory coordinator: propose
as one admin, approve as another, wait for the operation; exit codes 0/1/2/3; every value shown
escaped."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from mpcnet.client import cli

from .lifecycle_fake import KEY_ID, FakeCoordinator, admin_client, entry

ADMINS = {"admin1": "ada", "admin2": "bob"}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeCoordinator:
    f = FakeCoordinator()

    def client(ap: object, opts: cli.GlobalOpts) -> object:
        c = admin_client(f, ADMINS[opts.as_name or "admin1"])
        c.close = lambda: None  # type: ignore[method-assign]
        return c

    monkeypatch.setattr(cli, "_client", client)
    return f


def run(who: str, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["--cluster", "C", "--as", who, *argv])
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def test_refresh_proposed_by_one_admin_and_approved_by_another_waits_for_the_operation(fake: FakeCoordinator) -> None:
    code, out, err = run("admin1", "key", "refresh", KEY_ID.hex(), "--reason", "quarterly", "--json")
    doc = json.loads(out)["proposal"]
    assert code == 0 and doc["state"] == "pending" and doc["operation"]["reason"] == "quarterly"
    hint = f"lifecycle approve {doc['proposal_id']} --expect-digest {doc['digest']}"
    assert hint in err
    code, out, err = run("admin2", "lifecycle", "approve", doc["proposal_id"], "--expect-digest", doc["digest"], "--json")
    done = json.loads(out)
    assert code == 0 and done["proposal"]["state"] == "applied"
    assert [o["state"] for o in done["operations"]] == ["done"] and done["operations"][0]["new_epoch"] == 1
    assert f"waiting for key operation {doc['proposal_id']}" in err
    code, out, _ = run("admin1", "key", "operations", KEY_ID.hex())
    assert code == 0 and "DONE" in out and "refresh" in out and "1-of" not in out


def test_a_failed_operation_exits_1_and_no_wait_returns_at_once(fake: FakeCoordinator) -> None:
    _, out, _ = run("admin1", "key", "reshare", KEY_ID.hex(), "--threshold", "3", "--nodes", "1,2,4,5", "--json")
    pid = json.loads(out)["proposal"]["proposal_id"]
    orig = fake._maybe_apply

    def fail(p: str) -> object:
        r = orig(p)
        if p in fake.ops:
            fake.ops[p].state, fake.ops[p].error = "failed", "node 4 \x1b[2J went away"
        return r

    fake._maybe_apply = fail  # type: ignore[method-assign]
    code, out, _ = run("admin2", "lifecycle", "approve", pid)
    assert code == 1 and "FAILED" in out and "\x1b" not in out and "\\x1b" in out
    # what to do about it: the key is left as it was, and the command that tries again
    assert "the key stays at epoch 0 and signs" in out and f"'mpc key reshare {KEY_ID.hex()} --threshold 3 --nodes 1,2,4,5'" in out
    code, out, _ = run("admin1", "status")
    assert code == 0 and "the key stays at epoch 0" in out and f"key reshare {KEY_ID.hex()} --threshold 3" in out


def test_no_wait(fake: FakeCoordinator) -> None:
    _, out, _ = run("admin1", "key", "refresh", KEY_ID.hex(), "--json")
    pid = json.loads(out)["proposal"]["proposal_id"]
    code, out, err = run("admin2", "lifecycle", "approve", pid, "--no-wait", "--json")
    assert code == 0 and "operations" not in json.loads(out) and "waiting" not in err


def test_approve_with_another_digest_signs_nothing_and_exits_1(fake: FakeCoordinator) -> None:
    _, out, _ = run("admin1", "node", "remove", "3", "--json")
    pid = json.loads(out)["proposal"]["proposal_id"]
    code, _, err = run("admin2", "lifecycle", "approve", pid, "--expect-digest", "11" * 32)
    assert code == 1 and "nothing was signed" in err and "ApproveLifecycleProposal" not in fake.calls


def test_remove_then_roster_show_and_status(fake: FakeCoordinator) -> None:
    _, out, _ = run("admin1", "node", "remove", "3", "--json")
    pid = json.loads(out)["proposal"]["proposal_id"]
    code, out, _ = run("admin2", "lifecycle", "show", pid)
    assert code == 0 and "revoke node 3 (node-3)" in out
    assert run("admin2", "lifecycle", "approve", pid)[0] == 0
    code, out, _ = run("admin1", "roster", "show", "--json")
    assert code == 0 and json.loads(out)["revoked"] == [3] and json.loads(out)["version"] == 2
    code, out, _ = run("admin1", "roster", "show", "--history")  # what a new node's config takes, verified
    from governance.roster import SignedRosterChange, verify_roster_history
    from tests.governance.gov_util import admin_set

    chain = [SignedRosterChange.from_dict(d) for d in json.loads(out)]
    assert code == 0 and [h.to_bytes() for h in chain] == [h.to_bytes() for h in fake.history]
    assert verify_roster_history(admin_set(), chain).version == 2
    code, out, _ = run("admin1", "status")
    assert code == 0 and "version 2, epoch 1" in out and "REVOKED" in out
    code, out, _ = run("admin1", "status", "--json")
    assert json.loads(out)["revoked"] == [3] and json.loads(out)["roster_version"] == 2
    code, out, _ = run("admin1", "lifecycle", "list")
    assert code == 0 and "APPLIED" in out and "roster v2" in out


def test_node_add_from_an_enrolment_file(fake: FakeCoordinator, tmp_path: Path) -> None:
    good = tmp_path / "node-6.json"
    d = entry(6).to_dict()
    del d["status"], d["key_version"]
    good.write_text(json.dumps(d))
    code, out, _ = run("admin1", "node", "add", "--enrolment", str(good), "--json")
    assert code == 0 and json.loads(out)["proposal"]["roster"]["version"] == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**d, "identity_key": "00" * 32}))
    code, _, err = run("admin1", "node", "add", "--enrolment", str(bad))
    assert code == 2 and "--enrolment: identity_key" in err and err.count("\n") == 1
    code, _, err = run("admin1", "node", "add", "--enrolment", str(tmp_path / "missing.json"))
    assert code == 2 and "--enrolment: cannot read" in err


@pytest.mark.parametrize(("argv", "what"), [
    (("--nodes", "1,1,2"), "a node appears twice"), (("--nodes", "1,\uff12"), "digits 0-9"), (("--nodes", "0,1"), "1..255"),
])
def test_reshare_refuses_bad_node_lists(fake: FakeCoordinator, argv: tuple[str, ...], what: str) -> None:
    code, _, err = run("admin1", "key", "reshare", KEY_ID.hex(), "--threshold", "2", *argv)
    assert code == 2 and what in err and err.count("\n") == 1


def test_reshare_to_an_unknown_node_is_refused_by_the_sdk(fake: FakeCoordinator) -> None:
    code, _, err = run("admin1", "key", "reshare", KEY_ID.hex(), "--threshold", "2", "--nodes", "1,2,7")
    assert code == 1 and "nodes: node 7 is not an active node" in err and "ProposeKeyOperation" not in fake.calls


def test_rotate_keys_needs_a_ca(fake: FakeCoordinator, tmp_path: Path) -> None:
    code, _, err = run("admin1", "node", "rotate-keys", "2")
    assert code == 2 and "has no dev CA" in err and err.count("\n") == 1
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    code, _, err = run("admin1", "node", "rotate-keys", "2", "--ca-cert", str(ca))
    assert code == 2 and "give both --ca-cert and --ca-key" in err


def test_status_shows_running_key_operations(fake: FakeCoordinator) -> None:
    _, out, _ = run("admin1", "key", "refresh", KEY_ID.hex(), "--json")
    pid = json.loads(out)["proposal"]["proposal_id"]
    run("admin2", "lifecycle", "approve", pid, "--no-wait")
    fake.ops[pid].state = "committing"
    fake.ops[pid].pending_nodes.extend([4, 5])
    code, out, _ = run("admin1", "status")
    row = next(line for line in out.splitlines() if line.startswith("operation "))
    assert row.split()[1] == pid and row.index(pid) < 20  # the label column stays narrow (no 42-character labels)
    assert code == 0 and "refresh key" in out and "COMMITTING" in out and "[4, 5]" in out
    code, out, _ = run("admin1", "status", "--json")
    ops = json.loads(out)["operations"]
    assert [(o["operation_id"], o["state"], o["pending_nodes"]) for o in ops] == [(pid, "committing", [4, 5])]


def test_keys_row_shows_the_epoch_and_the_nodes_holding_the_key() -> None:
    from mpcnet.client.cli_render import key_list_line

    d = {"key_id": "ab", "status": "active", "threshold": 3, "parties": 4, "ethereum_address": "0x1", "epoch": 2,
         "committee": [1, 2, 4, 5], "label": "x\n"}
    assert key_list_line(d) == "ab  active   3-of-4  ecdsa-secp256k1 0x1  epoch 2 nodes 1,2,4,5  x\\n"  # the label still last, escaped
    assert key_list_line({**d, "committee": []}) == "ab  active   3-of-4  ecdsa-secp256k1 0x1  x\\n"  # a coordinator before issue 11


def test_a_pending_proposal_overtaken_by_another_is_marked_stale(fake: FakeCoordinator) -> None:
    """Two refreshes proposed from epoch 0; once one is applied the other can never be: list and
    show say so (approving it is refused), instead of leaving an operator to try it."""
    _, out, _ = run("admin1", "key", "refresh", KEY_ID.hex(), "--json")
    first = json.loads(out)["proposal"]["proposal_id"]
    _, out, _ = run("admin1", "key", "refresh", KEY_ID.hex(), "--reason", "again", "--json")
    second = json.loads(out)["proposal"]["proposal_id"]
    code, out, _ = run("admin1", "lifecycle", "list")
    assert code == 0 and "STALE" not in out
    assert run("admin2", "lifecycle", "approve", first)[0] == 0
    fake.epoch = 1  # the applied refresh moved the key on
    code, out, _ = run("admin1", "lifecycle", "list")
    row = next(line for line in out.splitlines() if line.startswith(second))
    assert code == 0 and "STALE: the key is at epoch 1, this operation starts from epoch 0; approving it is refused" in row
    assert "STALE" not in next(line for line in out.splitlines() if line.startswith(first))  # applied: not pending
    code, out, _ = run("admin1", "lifecycle", "show", second)
    assert code == 0 and "STALE" in out and "approving it is refused" in out


def test_a_pending_roster_change_that_no_longer_extends_the_roster_is_marked_stale(fake: FakeCoordinator) -> None:
    _, out, _ = run("admin1", "node", "remove", "3", "--json")
    first = json.loads(out)["proposal"]["proposal_id"]
    _, out, _ = run("admin1", "node", "remove", "4", "--json")
    second = json.loads(out)["proposal"]["proposal_id"]
    assert run("admin2", "lifecycle", "approve", first)[0] == 0
    code, out, _ = run("admin1", "lifecycle", "list", "--state", "pending")
    row = next(line for line in out.splitlines() if line.startswith(second))
    assert code == 0 and "STALE: the roster is at version 2 now; approving it is refused" in row
    assert "STALE" not in next(line for line in out.splitlines() if line.startswith(first))
