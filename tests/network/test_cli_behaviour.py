"""The ``mpc`` CLI against a fake client (in-process, no server): exit codes (one table, the same
outcome giving the same code in every command), waiting (the id first, --timeout), global options
before and after the subcommand and from the environment, views that caller text cannot forge
(issue 10 item 2), every key of the signature and key dicts, Ctrl-C and a closed stdout."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.approval import SigningRequest
from mpcnet.client import MpcError, SignRequest, cli
from mpcnet.client.cli import GlobalOpts
from mpcnet.common.stores.audit import AuditLog

KEY = "ab" * 32
LABEL = "ops\x1b[8m\n<fake row>"
FORGED = "\ndigest  " + "00" * 32 + " (verified)\nstate  REJECTED"
PEM = "-----BEGIN PUBLIC KEY-----\nMFYwEAYHKoZIzj0CAQYFK4EEAAoDQgAE\n-----END PUBLIC KEY-----\n"


class FakeSignature:
    """What the wallet branch's SignatureResult.as_dict(chain_id=...) returns (extra fields included)."""

    def as_dict(self, chain_id: int | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "request_id": "r-1", "r": "11" * 32, "s": "22" * 32, "recovery_id": 1, "der": "30", "public_key": "02" + "33" * 32,
            "signers": [1, 2], "compact": "11" * 32 + "22" * 32,
        }
        if chain_id is not None:
            d["ethereum"] = "11" * 32 + "22" * 32 + f"{chain_id * 2 + 36:02x}"
            d["v"] = chain_id * 2 + 36
        return d


def request(state: str = "pending_approval", description: str = "pay invoice 42", signature: Any = None) -> SignRequest:
    now = time.time_ns() // 1_000_000
    req = SigningRequest("r-1", bytes.fromhex(KEY), b"\x07" * 32, (0, 1), "requester1", "x", now, now + 60_000, 1, bytes(32))
    object.__setattr__(req, "description", description)  # as if a (compromised) client had let it through
    return SignRequest(
        request_id="r-1", state=state, request=req, request_bytes=b"", approvals=(), approval_quorum=2, approvers=3,
        signature=signature, error_code="ABORTED" if state == "failed" else "", error_message="sign aborted" if state == "failed" else "",
        attempts=1, updated_unix_ms=now,
    )


class FakeKey:
    scheme = "ecdsa-secp256k1"  # issue 16: every key has one
    key_id = bytes.fromhex(KEY)

    def describe(self, path: Any = None) -> dict[str, Any]:
        return {"key_id": KEY, "label": LABEL, "status": "active", "threshold": 2, "parties": 3, "path": path or "m",
                "public_key": "02" + "33" * 32, "ethereum_address": "0x" + "44" * 20, "xpub": "xpub661MyMwAqRbcF", "public_key_pem": PEM}


class Fake:
    """A client: each test sets what the calls return or raise."""

    def __init__(self, **kw: Any) -> None:
        self.identity: Any = object()
        self.calls: list[tuple[str, Any]] = []
        self.after_approve = "signing"
        self.waited = "failed"
        self.wait_error: MpcError | None = None
        self.raise_on_list: BaseException | None = None
        self.outages: list[str] = []  # what the SDK's on_retry is called with during a wait
        self.node_endpoints: dict[str, str] = {}  # from cluster.json (none: --endpoint)
        self.__dict__.update(kw)

    def __enter__(self) -> Fake:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def list_keys(self) -> list[FakeKey]:
        if self.raise_on_list is not None:
            raise self.raise_on_list
        return [FakeKey(), FakeKey()]

    def create_key(self, label: str, *, request_id: str = "", scheme: str = "ecdsa-secp256k1") -> FakeKey:
        self.calls.append(("create_key", request_id))
        if self.wait_error is not None:
            raise self.wait_error
        return FakeKey()

    def get_key(self, key_id: bytes) -> FakeKey:
        return FakeKey()

    def get_sign_request(self, rid: str) -> SignRequest:
        return request(description=FORGED)

    def submit_sign_request(self, *a: Any, **kw: Any) -> SignRequest:
        return request()

    def wait_sign_request(self, rid: str, *, timeout: float | None = None, on_retry: Any = None) -> SignRequest:
        self.calls.append(("wait", timeout))
        for why in self.outages:
            on_retry(why)
        if self.wait_error is not None:
            raise self.wait_error
        return request(self.waited, signature=FakeSignature() if self.waited == "done" else None)

    def watch_sign_request(self, rid: str, *, timeout: float | None = None, on_retry: Any = None) -> Iterator[SignRequest]:
        self.calls.append(("watch", timeout))
        yield request()
        for why in self.outages:
            on_retry(why)
        if self.wait_error is not None:
            raise self.wait_error
        yield request(self.waited)

    def approve(self, rid: str, **kw: Any) -> SignRequest:
        return request(self.after_approve)

    def reject(self, rid: str) -> SignRequest:
        return request("rejected")

    def list_sign_requests(self, **kw: Any) -> list[SignRequest]:
        return [request(description=FORGED)] * 3

    def list_proposals(self, state: Any) -> list[Any]:
        raise BrokenPipeError  # stands for a write to a closed stdout

    def cluster_status(self) -> Any:
        raise MpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Fake:
    f = Fake()
    seen: list[GlobalOpts] = []
    monkeypatch.setattr(cli, "_client", lambda ap, opts: (seen.append(opts), f)[1])
    f.seen = seen  # type: ignore[attr-defined]
    return f


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["--cluster", "C", "--as", "approver1", *argv])
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def test_a_label_cannot_forge_or_hide_a_row_in_keys(fake: Fake) -> None:
    code, out, _ = run("keys")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2  # one row per key, no more
    for line in lines:
        assert line.isprintable() and line.startswith(KEY) and line.endswith("ops\\x1b[8m\\n<fake row>")


def test_a_description_cannot_imitate_the_approvers_rows(fake: Fake) -> None:
    for argv in (["request", "show", "r-1"], ["approve", "r-1"]):
        fake.after_approve = "pending_approval"
        fake.get_sign_request = lambda rid: request(description=FORGED)  # type: ignore[method-assign]
        fake.approve = lambda rid, **kw: request(description=FORGED)  # type: ignore[method-assign]
        code, out, _ = run(*argv)
        lines = out.splitlines()
        assert code == 0 and all(line.isprintable() for line in lines)
        assert [line.split()[0] for line in lines[:7]] == ["request_id", "key_id", "digest", "scheme", "path", "requester", "expires"]
        assert sum(line.startswith("digest") for line in lines) == 1 and sum(line.startswith("state") for line in lines) == 1
        assert lines[-1].startswith("description") and "requester's text" in lines[-1] and "\\ndigest" in lines[-1]


def test_requests_list_puts_the_description_last_and_escaped(fake: Fake) -> None:
    code, out, _ = run("requests")
    assert code == 0 and len(out.splitlines()) == 3 and all("description: " in line and line.isprintable() for line in out.splitlines())


def test_approve_wait_exits_1_when_the_request_ends_failed(fake: Fake) -> None:
    assert run("approve", "r-1", "--wait")[0] == 1  # regression: it exited 0
    fake.waited = "done"
    assert run("approve", "r-1", "--wait")[0] == 0
    fake.after_approve = "pending_approval"  # the quorum is not complete: nothing to wait for
    assert run("approve", "r-1", "--wait")[0] == 0
    fake.after_approve, fake.waited = "signing", "expired"
    assert run("request", "show", "r-1", "--wait")[0] == 1
    assert run("request", "watch", "r-1")[0] == 1
    fake.waited = "done"
    assert run("request", "watch", "r-1")[0] == 0


def test_request_sign_wait_prints_the_id_first_and_a_passed_timeout_exits_3(fake: Fake) -> None:
    fake.wait_error = MpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "request r-1 is still pending_approval")
    code, out, err = run("request", "sign", "--key", KEY, "--digest", "07" * 32, "--wait", "--timeout", "7.5", "--json")
    assert code == 3 and fake.calls == [("wait", 7.5)]
    assert err.splitlines()[0] == "request r-1 submitted; waiting..."
    assert json.loads(out)["error"]["code"] == "DEADLINE_EXCEEDED"  # stdout stays one JSON document
    fake.wait_error, fake.waited = None, "done"
    code, out, err = run("--json", "request", "sign", "--key", KEY, "--digest", "07" * 32, "--wait")
    assert code == 0 and json.loads(out)["state"] == "done" and fake.calls[-1] == ("wait", None)  # default: no limit


def test_a_wait_that_gives_up_names_the_request_in_its_json_error(fake: Fake) -> None:
    """Review of issue 10: 'request sign --wait --json' past --timeout (exit 3) wrote only
    ``{"error": ...}``: a script had no id to resume with ('request show ID --wait'), the id being
    on stderr only. Every wait's error document names the request (additive field); other
    commands' documents are unchanged."""
    fake.wait_error = MpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "request r-1 still pending_approval after 7.5 s")
    fake.submit_sign_request = lambda *a, **kw: request()  # type: ignore[method-assign]
    for argv in (["request", "sign", "--key", KEY, "--digest", "07" * 32, "--wait"], ["request", "show", "r-1", "--wait"],
                 ["approve", "r-1", "--wait"], ["request", "watch", "r-1"]):
        code, out, err = run(*argv, "--timeout", "7.5", "--json")
        doc = json.loads(out.splitlines()[-1] if argv[1] == "watch" else out)
        assert code == 3 and doc == {"error": {"code": "DEADLINE_EXCEEDED", "message": fake.wait_error.message}, "request_id": "r-1"}, argv
        assert "'mpc request show r-1 --wait' waits again" in err.splitlines()[-1]
    fake.wait_error = MpcError(grpc.StatusCode.PERMISSION_DENIED, "not yours")  # any error once the request exists
    code, out, _ = run("request", "sign", "--key", KEY, "--digest", "07" * 32, "--wait", "--json")
    assert code == 1 and json.loads(out)["request_id"] == "r-1"
    fake.submit_sign_request = lambda *a, **kw: (_ for _ in ()).throw(MpcError(grpc.StatusCode.PERMISSION_DENIED, "no"))  # type: ignore[method-assign]
    code, out, _ = run("request", "sign", "--key", KEY, "--digest", "07" * 32, "--wait", "--json")
    assert code == 1 and json.loads(out) == {"error": {"code": "PERMISSION_DENIED", "message": "no"}}  # no request: no id


def test_request_watch_json_is_json_lines_even_when_the_timeout_passes(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    """``request watch --json`` writes one document per change, one per line; when --timeout passes
    the error document was pretty-printed over several lines, which a JSON-lines reader cannot parse."""

    def watch(rid: str, *, timeout: float | None = None, on_retry: object = None) -> Iterator[SignRequest]:
        yield request()
        raise MpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "request r-1 still pending_approval after 2 s")

    monkeypatch.setattr(fake, "watch_sign_request", watch, raising=False)
    code, out, _ = run("request", "watch", "r-1", "--json", "--timeout", "2")
    docs = [json.loads(line) for line in out.splitlines()]
    assert code == 3 and len(docs) == 2 and docs[0]["state"] == "pending_approval"
    assert docs[1] == {
        "error": {"code": "DEADLINE_EXCEEDED", "message": "request r-1 still pending_approval after 2 s"}, "request_id": "r-1",
    }
    monkeypatch.setattr(cli, "_cluster_info", lambda opts: {"audit": {"coordinator": {}}})
    fake.fetch_audit = lambda name: (_ for _ in ()).throw(MpcError(grpc.StatusCode.PERMISSION_DENIED, "auditors only"))  # type: ignore[attr-defined]
    code, out, _ = run("--json", "audit", "export", "--jsonl")
    denied = {"error": {"code": "PERMISSION_DENIED", "message": "auditors only"}}
    assert code == 1 and [json.loads(line) for line in out.splitlines()] == [denied]  # audit export: JSON lines too
    fake.cluster_status = lambda: (_ for _ in ()).throw(MpcError(grpc.StatusCode.UNAVAILABLE, "down"))  # type: ignore[method-assign]
    code, out, _ = run("status", "--json")
    assert code == 3 and json.loads(out) == {"error": {"code": "UNAVAILABLE", "message": "down"}}  # elsewhere: one document


def test_approve_wait_and_show_wait_say_what_they_wait_for_first(fake: Fake) -> None:
    """Like ``request sign --wait``: an approval that completes the quorum is recorded before the
    (possibly long) wait for the signature; the approver is told so on stderr before it (it was silent)."""
    fake.waited = "done"
    code, _, err = run("approve", "r-1", "--wait")
    assert code == 0 and err.splitlines()[0] == "request r-1 approved; the quorum is complete; waiting for the signature..."
    code, _, err = run("request", "show", "r-1", "--wait")
    assert code == 0 and err.splitlines()[0] == "waiting for request r-1 to end..."
    fake.after_approve = "pending_approval"  # nothing to wait for: nothing said
    assert run("approve", "r-1", "--wait")[2] == ""


def test_a_wait_says_on_stderr_when_the_coordinator_stops_answering(fake: Fake) -> None:
    # regression: with the coordinator down after the first answer, --wait/watch retried forever
    # without a word (a cron job or an operator saw a silent hang)
    fake.outages, fake.waited = ["UNAVAILABLE: failed to connect to all addresses\x1b[2J"], "done"
    for argv in (["request", "show", "r-1", "--wait"], ["request", "watch", "r-1"], ["approve", "r-1", "--wait"],
                 ["request", "sign", "--key", KEY, "--digest", "07" * 32, "--wait", "--timeout", "60"]):
        code, _, err = run(*argv)
        notes = [line for line in err.splitlines() if "the wait is interrupted" in line]
        assert code == 0 and len(notes) == 1, (argv, err)
        assert notes[0].isprintable() and "UNAVAILABLE" in notes[0] and "retrying until" in notes[0]
    assert "--timeout" in notes[0]


def test_watch_json_is_json_lines_also_when_it_times_out(fake: Fake) -> None:
    # regression: 'request watch --json' printed one JSON line per change, then an indented
    # multi-line error document: neither one JSON document nor JSON lines
    fake.wait_error = MpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "request r-1 still pending_approval after 2 s")
    code, out, _ = run("request", "watch", "r-1", "--timeout", "2", "--json")
    docs = [json.loads(line) for line in out.splitlines()]
    assert code == 3 and docs[0]["state"] == "pending_approval" and docs[-1]["error"]["code"] == "DEADLINE_EXCEEDED"


def test_show_wait_on_a_failed_keygen_request_exits_1(fake: Fake) -> None:
    # regression: 'request show KEYGEN_ID --wait' exited 0 for a FAILED keygen request (a waited-for
    # signing request that ends FAILED exits 1)
    from mpcnet.client.sdk import RequestInfo

    fake.wait_error = MpcError(grpc.StatusCode.NOT_FOUND, "request_id: unknown signing request 'kg-1'")
    for state, wanted in (("failed", 1), ("succeeded", 0)):
        fake.get_request = lambda rid, s=state: RequestInfo(  # type: ignore[attr-defined]
            "kg-1", "keygen", s, b"", "ABORTED" if s == "failed" else "", "", None, 1)
        code, out, _ = run("request", "show", "kg-1", "--wait")
        assert code == wanted and f"state       {state}" in out, out


def test_audit_export_json_is_json_lines_also_when_a_component_fails(fake: Fake, tmp_path: Path) -> None:
    # sibling of watch: entries went to stdout, then the error as an indented multi-line document
    from types import SimpleNamespace

    entry = SimpleNamespace(details_json="{}", seq=1, timestamp_ms=1, actor="a", action="b", request_id="", outcome="ok",
                            prev_hash=b"", entry_hash=b"", signature=b"")

    def fetch_audit(name: str) -> Any:
        if name == "node-1":
            raise MpcError(grpc.StatusCode.UNAVAILABLE, "node-1 unreachable")
        return SimpleNamespace(entries=[entry, entry])

    fake.fetch_audit = fetch_audit  # type: ignore[attr-defined]
    (tmp_path / "cluster.json").write_text(json.dumps({"audit": {"coordinator": {}, "node-1": {}}}))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["--cluster", str(tmp_path), "--as", "auditor1", "--json", "audit", "export", "--jsonl"])
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert code == 3 and len(docs) == 3 and docs[-1]["error"]["code"] == "UNAVAILABLE", out.getvalue()


def test_unreachable_coordinator_exits_3(fake: Fake) -> None:
    code, _, err = run("status")
    assert code == 3 and err.startswith("mpc: UNAVAILABLE")


def test_unreachable_coordinator_says_what_to_do(fake: Fake) -> None:
    """grpc's 'failed to connect to all addresses' alone does not tell a CLI user that the cluster
    may be stopped (after 'mpc-cluster stop') or the --endpoint/--tls-ca wrong; a server's own
    UNAVAILABLE (missing nodes) gets no such hint."""
    code, _, err = run("status")
    assert code == 3 and "mpc-cluster status --dir DIR" in err and "mpc-cluster up --dir DIR" in err and "--tls-ca" in err, err
    assert len(err.splitlines()) == 1
    fake.raise_on_list = MpcError(grpc.StatusCode.UNAVAILABLE, "signing needs 3 nodes; missing: node-4")
    code, _, err = run("keys")
    assert code == 3 and "mpc-cluster" not in err, err



def test_a_call_past_rpc_timeout_says_what_to_do(fake: Fake) -> None:
    """grpc's bare 'Deadline Exceeded' (the call outlived --rpc-timeout) names the option to change;
    the SDK's own --timeout message is left as it is."""
    fake.raise_on_list = MpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    code, _, err = run("keys", "--rpc-timeout", "0.001")
    assert code == 3 and "--rpc-timeout SECONDS" in err and len(err.splitlines()) == 1, err
    fake.raise_on_list = MpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "request r-1 still pending_approval after 5 s")
    code, _, err = run("keys")
    assert code == 3 and "--rpc-timeout" not in err, err
    assert "'mpc request show r-1 --wait' waits again" in err, err  # what to do when --timeout passed


def test_endpoint_with_a_wrong_tls_file_is_a_usage_error_naming_the_option(tmp_path: Path) -> None:
    """A --tls-key of another certificate (or a file that is no PEM certificate or key) is exit 2
    naming the option, not grpc's C-core log lines and UNAVAILABLE (exit 3, "no answer")."""
    from mpcnet.common.pki import create_ca, issue_cert

    ca = create_ca(tmp_path / "ca")
    alice = issue_cert(ca, tmp_path / "certs", "alice", role="auditor")
    bob = issue_cert(ca, tmp_path / "certs", "bob", role="auditor")
    files = {"--tls-cert": alice.cert, "--tls-key": alice.key, "--tls-ca": ca.cert}
    for option, bad, why in (
        ("--tls-key", bob.key, "is not the private key of the certificate"),
        ("--tls-cert", alice.key, "is not a PEM certificate"),
        ("--tls-key", alice.cert, "is not an unencrypted PEM private key"),
        ("--tls-ca", alice.key, "is not a PEM certificate"),
    ):
        argv = ["--endpoint", "localhost:1"] + [x for o, f in {**files, option: bad}.items() for x in (o, str(f))]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main([*argv, "keys"])
        assert code == 2 and err.getvalue().startswith(f"mpc: error: {option}: ") and why in err.getvalue(), err.getvalue()
        assert len(err.getvalue().splitlines()) == 1


def test_global_options_before_or_after_the_subcommand_and_from_the_environment(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[GlobalOpts] = fake.seen  # type: ignore[attr-defined]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["keys", "--cluster", "D", "--as", "auditor1", "--json", "--rpc-timeout", "9"]) == 0
        assert cli.main(["request", "--as", "admin1", "watch", "r-1", "--cluster", "D", "--timeout", "2"]) == 1
    assert seen[0] == GlobalOpts(cluster="D", as_name="auditor1", json=True, rpc_timeout=9.0)
    assert (seen[1].as_name, seen[1].cluster, seen[1].timeout) == ("admin1", "D", 2.0) and fake.calls[-1] == ("watch", 2.0)
    monkeypatch.setenv("MPC_CLUSTER", "E")
    monkeypatch.setenv("MPC_AS", "requester1")
    with contextlib.redirect_stdout(out):
        assert cli.main(["keys"]) == 0
        assert cli.main(["keys", "--as", "auditor1"]) == 0  # the command line wins
    assert (seen[2].cluster, seen[2].as_name, seen[3].as_name) == ("E", "requester1", "auditor1")


def test_endpoint_on_the_command_line_beats_mpc_cluster_in_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """'the command line beats the environment': --endpoint given while MPC_CLUSTER is exported
    connects to --endpoint (it silently used MPC_CLUSTER's coordinator); --cluster and --endpoint
    from one source are a usage error, not one of them silently ignored."""
    made: list[str] = []

    class Client:
        def __init__(self, endpoint: str, *a: Any, **kw: Any) -> None:
            made.append(endpoint)

        @staticmethod
        def from_cluster(directory: str, **kw: Any) -> Any:
            made.append(f"cluster {directory}")
            raise OSError("stop here")

    monkeypatch.setattr(cli, "MpcClient", Client)
    monkeypatch.setattr(cli, "CertPaths", lambda *a: None)
    pem = tmp_path / "x.pem"
    pem.write_text("x")
    tls = ["--tls-cert", str(pem), "--tls-key", str(pem), "--tls-ca", str(pem)]
    monkeypatch.setenv("MPC_CLUSTER", str(tmp_path))
    monkeypatch.setenv("MPC_AS", "auditor1")
    real = cli._client
    real(None, GlobalOpts(cluster=str(tmp_path), as_name="auditor1", endpoint="localhost:1", tls_cert=pem,
                                 tls_key=pem, tls_ca=pem, from_env=frozenset({"cluster", "as_name"})))
    assert made == ["localhost:1"]
    seen: list[GlobalOpts] = []
    monkeypatch.setattr(cli, "_client", lambda ap, opts: (seen.append(opts), Fake())[1])
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["keys", "--endpoint", "localhost:1", *tls]) == 0
    assert seen[-1].from_env == {"cluster", "as_name"}
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["--cluster", "D", "keys", "--endpoint", "localhost:1"]) == 0
    assert seen[-1].from_env == {"as_name"}
    for env in (frozenset[str](), frozenset({"cluster", "endpoint"})):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), pytest.raises(click.UsageError, match="give one of them"):
            real(None, GlobalOpts(cluster="D", endpoint="localhost:1", from_env=env))


def test_signing_without_a_key_says_which_option_to_give(fake: Fake) -> None:
    fake.identity = None
    for argv in (["approve", "r-1"], ["reject", "r-1"], ["policy", "approve", "abc"], ["policy", "attest"]):
        code, _, err = run(*argv)
        assert code == 2 and "--signing-key" in err and "--as NAME" in err and "from_cluster" not in err, err


def test_chain_id_and_every_field_of_the_signature_and_key_dicts(fake: Fake) -> None:
    fake.waited = "done"
    code, out, _ = run("request", "show", "r-1", "--wait", "--chain-id", "1")
    rows = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert code == 0 and {"compact", "ethereum", "v", "r", "s", "der", "signers"} <= rows
    code, out, _ = run("request", "show", "r-1", "--wait", "--chain-id", "1", "--json")
    assert json.loads(out)["signature"]["v"] == 38
    code, out, _ = run("pubkey", "--key", KEY, "--path", "m/0/1")
    lines = out.splitlines()
    assert code == 0 and any(line.startswith("xpub") for line in lines)
    at = lines.index("public_key_pem")
    assert lines[at + 1] == "    -----BEGIN PUBLIC KEY-----" and lines[at + 3] == "    -----END PUBLIC KEY-----"
    assert lines[-1].startswith("label") and lines[-1].endswith("ops\\x1b[8m\\n<fake row>")


def test_ctrl_c_exits_130_without_a_traceback(fake: Fake) -> None:
    fake.raise_on_list = KeyboardInterrupt()
    code, _, err = run("keys")
    assert code == 130 and err.strip().splitlines()[-1] == "mpc: interrupted"


class ClosedPipe(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("argv", [["keys"], ["requests"], ["policy", "proposals"], ["request", "watch", "r-1"], ["keys", "--json"],
                                  ["requests", "--json"]])
def test_a_closed_stdout_exits_141_silently(fake: Fake, argv: list[str]) -> None:
    err = io.StringIO()
    with contextlib.redirect_stdout(ClosedPipe()), contextlib.redirect_stderr(err):
        assert cli.main(["--cluster", "C", "--as", "auditor1", *argv]) == 141
    assert err.getvalue() == ""


def test_help_piped_to_a_closed_reader_has_no_traceback() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    p = subprocess.Popen([sys.executable, "-m", "mpcnet.client.cli", "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # before the interpreter has started: its first write meets a closed pipe
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141 and err == "", err


def test_help_prints_the_exit_codes() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["--help"]) == 0
    text = out.getvalue()
    for code in ("0 ", "1 ", "2 ", "3 ", "130", "141"):
        assert f"\n    {code}" in text, code
    assert "--tls-key" in text and "MPC_CLUSTER" in text and "_MPC_COMPLETE" in text


def _audit_db(tmp_path: Path) -> tuple[Path, bytes]:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "audit.db"
    with AuditLog.open(path, component="node-1", signing_key=key) as log:
        for i in range(3):
            log.append("admin1", "keygen", request_id=f"r-{i}", outcome="ok")
        return path, log.public_key


def test_audit_verify_exit_codes(tmp_path: Path) -> None:
    path, pub = _audit_db(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert cli.main(["audit", "verify", "--db", str(path), "--public-key", pub.hex()]) == 0
        assert cli.main(["audit", "verify", "--db", str(path), "--public-key", "11" * 32]) == 2  # a wrong key: usage
        assert cli.main(["audit", "verify", "--db", str(tmp_path / "missing.db"), "--public-key", pub.hex()]) == 2
    assert "check --public-key" in err.getvalue()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER audit_append_only_update")
        conn.execute("UPDATE audit SET outcome = 'forged' WHERE seq = 2")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert cli.main(["audit", "verify", "--db", str(path), "--public-key", pub.hex()]) == 1  # a broken chain
    assert "BROKEN" in out.getvalue()


def test_commands_that_need_cluster_json_say_so(fake: Fake) -> None:
    fake.admin_set = None  # type: ignore[attr-defined]  # a client made from --endpoint: no admin set, no node endpoints
    fake.node_endpoints = {}  # type: ignore[attr-defined]
    for argv in (["policy", "propose", "--quorum", "2"], ["policy", "push"], ["policy", "attest"]):
        code, _, err = run(*argv)
        assert code == 2 and "--cluster DIR --as NAME" in err and "from_cluster" not in err, err


def test_help_names_a_file_option_file_not_text() -> None:
    """'--out TEXT' in 'mpc audit export --help' read as if it took text; an option that takes a
    file shows FILE (or PATH)."""
    ctx = click.Context(cli.cli)
    for path, cmd in cli.commands():
        for p in cmd.params:
            if isinstance(p, click.Option) and not p.hidden and "file" in (p.help or "").lower() and not p.is_flag:
                assert p.make_metavar(ctx) in ("FILE", "PATH", "DIR"), (path, p.name, p.make_metavar(ctx))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["audit", "export", "--help"]) == 0
    assert "--out FILE" in out.getvalue()


def test_a_label_over_256_bytes_of_utf8_is_a_usage_error_and_help_says_bytes(fake: Fake) -> None:
    """Labels are limited to 256 bytes (README, the coordinator, the nodes); '--label' said
    '256 characters' and let 200 'é' (400 bytes) through to a server refusal (exit 1)."""
    code, _, err = run("keygen", "--label", "\u00e9" * 200)
    assert code == 2 and "at most 256 bytes of UTF-8, got 400" in err and err.count("\n") == 1, err
    code, _, err = run("keygen", "--label", "\u00e9" * 128, "--json")  # 256 bytes: the client lets it through
    assert "256 bytes" not in err
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["keygen", "--help"]) == 0
    assert "at most 256 bytes of UTF-8" in " ".join(out.getvalue().split())


def test_pubkey_help_names_what_it_prints() -> None:
    """'mpc pubkey --help' named neither the PEM nor the xpub that README's wallet section promises."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["pubkey", "--help"]) == 0
    text = " ".join(out.getvalue().split())
    assert "PEM" in text and "xpub" in text and "chain code" in text and "Ethereum address" in text


def test_keygen_says_what_it_waits_for_first(fake: Fake) -> None:
    """Review of issue 10: 'mpc keygen' was silent during the DKG (up to the coordinator's
    dkg_timeout_s); like 'request sign --wait' it now says first, on stderr, what it waits for
    (the number of nodes from cluster.json when known); with --json stdout stays one document."""
    fake.node_endpoints = {"node-1": "127.0.0.1:1", "node-2": "127.0.0.1:2", "node-3": "127.0.0.1:3"}
    code, out, err = run("keygen", "--label", "ops", "--json")
    assert code == 0 and json.loads(out)["key_id"] == KEY and err.splitlines() == ["creating a key: DKG on 3 nodes..."]
    fake.node_endpoints = {}  # --endpoint: the nodes are not known here
    code, out, err = run("keygen", "--request-id", "kg.7")
    assert code == 0 and out.startswith("key_id") and err.splitlines() == ["creating a key (request kg.7): DKG on every node..."]
    fake.wait_error = MpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")  # --rpc-timeout passed: the DKG goes on
    code, out, err = run("keygen", "--request-id", "kg.7", "--json")
    assert code == 3 and json.loads(out) == {"error": {"code": "DEADLINE_EXCEEDED", "message": "Deadline Exceeded"}, "request_id": "kg.7"}
    assert err.splitlines()[0] == "creating a key (request kg.7): DKG on every node..." and len(err.splitlines()) == 2
