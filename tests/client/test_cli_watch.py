"""``mpc status --watch`` (mpcnet/client/cli_watch.py) with a fake client and fake or real
metrics endpoints: the figures shown, graceful degradation without metrics, escaping of every
server text, Ctrl-C (exit 0), --count, --json lines, the rich live view."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from mpcnet.client import cli, cli_watch
from mpcnet.client.sdk import Key, MpcError
from mpcnet.wire.mpc.v1 import coordinator_pb2

G = bytes.fromhex("0279BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798")
HOSTILE = "\x1b[31m[bold red]evil[/]\nforged line\u202e"


def _status() -> coordinator_pb2.ClusterStatusResponse:
    st = coordinator_pb2.ClusterStatusResponse(threshold=2, parties=3, roster_version=4, roster_epoch=1)
    st.nodes.add(index=1, name="node-1", endpoint="localhost:1", healthy=True, policies_synced=True,
                 clock_measured=True, clock_skew_ms=120, max_clock_skew_ms=30000)
    st.nodes.add(index=2, name="node-2", endpoint="localhost:2", healthy=False, last_error=HOSTILE, max_clock_skew_ms=30000)
    st.nodes.add(index=3, name="node-3", endpoint="localhost:3", healthy=True, policies_synced=True,
                 clock_measured=True, clock_skew_ms=95000, clock_suspect=True, max_clock_skew_ms=30000)
    return st


class FakeClient:
    def __init__(self, *, fail: list[BaseException | None] | None = None) -> None:
        self.fail = list(fail or [])
        self.calls = 0

    def cluster_status(self) -> coordinator_pb2.ClusterStatusResponse:
        self.calls += 1
        if self.fail:
            e = self.fail.pop(0)
            if e is not None:
                raise e
        return _status()

    def list_keys(self) -> list[Key]:
        return [Key(bytes([7]) * 32, HOSTILE, G, bytes(32), 2, 3, "active", 1, epoch=2)]

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _page(sigs: float, req_sum: float, req_count: float, live: float) -> bytes:
    lines = [
        "# TYPE mpcnet_signatures_total counter", f"mpcnet_signatures_total {sigs:g}",
        "# TYPE mpcnet_request_seconds histogram", f'mpcnet_request_seconds_bucket{{le="+Inf"}} {req_count:g}',
        f"mpcnet_request_seconds_sum {req_sum:g}", f"mpcnet_request_seconds_count {req_count:g}",
        "# TYPE mpcnet_quorum_to_done_seconds histogram", f'mpcnet_quorum_to_done_seconds_bucket{{le="+Inf"}} {req_count:g}',
        f"mpcnet_quorum_to_done_seconds_sum {req_sum / 3:g}", f"mpcnet_quorum_to_done_seconds_count {req_count:g}",
        "# TYPE mpcnet_anomaly_active gauge", 'mpcnet_anomaly_active{rule="key_burst"} 1', 'mpcnet_anomaly_active{rule="denied_calls"} 0',
        "# TYPE mpcnet_sessions_live gauge", f'mpcnet_sessions_live{{protocol="sign"}} {live:g}', 'mpcnet_sessions_live{protocol="dkg"} 0',
    ]
    return ("\n".join(lines) + "\n").encode()


class FakeEndpoints:
    """The coordinator's counts grow by 10 signatures (1.5 s of latency in all) per scrape."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, endpoint: str, timeout: float) -> bytes:
        if endpoint == "localhost:9100":
            self.n += 1
            return _page(10.0 * self.n, 1.5 * self.n, 10.0 * self.n, 0)
        if endpoint == "localhost:9102":
            raise OSError("connection refused")
        return _page(0, 0, 0, 2)


METRICS = {"coordinator": "localhost:9100", "node-1": "localhost:9101", "node-2": "localhost:9102"}


def _snaps(fetch: Any, *, metrics: dict[str, str] | None = METRICS, n: int = 2) -> list[cli_watch.Snapshot]:
    client = FakeClient()
    ticks = iter(float(i) for i in range(100))
    eps, note = cli_watch.metrics_endpoints({"metrics": metrics} if metrics is not None else {})
    return [cli_watch.take(client, eps, note, fetch, 1.0, clock=lambda: next(ticks), wall=lambda: 0.0) for _ in range(n)]


def test_the_view_shows_nodes_keys_sessions_rate_and_latency() -> None:
    a, b = _snaps(FakeEndpoints())
    text = "\n".join(cli_watch.plain_lines(a, b))
    assert "2-of-3, roster version 4 (epoch 1)" in text
    assert "node-1  localhost:1  up  +0.1s  yes" in text and "node-2  localhost:2  DOWN " in text
    assert "node-3  localhost:3  up  +95.0s OFF  yes" in text
    assert "Keys (1):" in text and "0707070707070707" in text and "active  2" in text
    assert "live sessions: dkg 0  sign 2" in text  # node-1 answered; node-2's endpoint did not
    assert "signing rate: 10.00/s (20 signatures in all)" in text  # 10 more signatures in 1 s
    assert "request latency: 0.150s mean (last interval)" in text and "signing latency: 0.050s mean (last interval)" in text
    assert "metrics: unreachable: node-2" in text and "anomalies: ACTIVE: key_burst" in text
    first = "\n".join(cli_watch.plain_lines(None, a))
    assert "rate from the next refresh" in first and "0.150s mean (since start)" in first


def test_every_server_text_is_escaped() -> None:
    a, b = _snaps(FakeEndpoints())
    for line in cli_watch.plain_lines(a, b):
        assert line.isprintable(), line
    text = "\n".join(cli_watch.plain_lines(a, b))
    assert "DOWN \\x1b[31m[bold red]evil[/]\\nforged line\\u202e" in text


def test_without_metrics_endpoints_the_figures_say_why() -> None:
    a, b = _snaps(FakeEndpoints(), metrics=None)
    text = "\n".join(cli_watch.plain_lines(a, b))
    assert "node-1" in text and "live sessions: n/a (no metrics endpoints in cluster.json)" in text
    assert "signing rate: n/a (no metrics endpoints in cluster.json)" in text


def test_bad_metrics_entries_in_cluster_json_are_ignored_and_named() -> None:
    eps, note = cli_watch.metrics_endpoints({"metrics": {"coordinator": "localhost:9100", "bad\nname": "x:1", "node-1": "not an endpoint"}})
    assert eps == {"coordinator": "localhost:9100"}
    assert "bad\\nname" in note and "node-1" in note and "\n" not in note
    assert cli_watch.metrics_endpoints({"metrics": [1]}) == ({}, "cluster.json: metrics: not a JSON object")


def test_a_counter_reset_gives_no_rate() -> None:
    fetch = FakeEndpoints()
    a, b = _snaps(fetch)
    assert cli_watch.signing_rate(b, a) is None  # fewer signatures than before: a restarted coordinator


def test_a_real_endpoint_is_scraped() -> None:
    from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

    reg = CollectorRegistry()
    Counter("mpcnet_signatures", "signatures", registry=reg).inc(3)
    Gauge("mpcnet_sessions_live", "live", ["protocol"], registry=reg).labels(protocol="sign").set(1)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    try:
        ep = f"127.0.0.1:{server.server_port}"
        got = cli_watch.scrape({"coordinator": ep, "node-1": ep}, cli_watch.http_fetch, 2.0)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    # signatures from the coordinator's endpoint only, live sessions from the nodes' only (issue 15 review)
    assert got.signatures_total == 3.0 and got.sessions_live == {"sign": 1.0} and got.unreachable == ()


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: FakeClient, *argv: str,
         metrics: dict[str, str] | None = METRICS) -> tuple[int, str, str]:
    (tmp_path / "cluster.json").write_text(json.dumps({"metrics": metrics} if metrics else {}))
    monkeypatch.setattr(cli, "_client", lambda ap, opts: client)
    monkeypatch.setattr(cli_watch, "http_fetch", FakeEndpoints())
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["--cluster", str(tmp_path), "--as", "auditor1", "status", *argv])
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def test_count_stops_after_n_refreshes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeClient()
    code, out, err = _run(tmp_path, monkeypatch, client, "--watch", "--interval", "0.01", "--count", "2")
    assert code == 0 and err == "" and client.calls == 2
    assert out.count("--- ") == 2 and "signing rate:" in out and "Nodes:" in out


def test_ctrl_c_ends_the_watch_with_exit_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeClient(fail=[None, None, KeyboardInterrupt()])
    code, out, err = _run(tmp_path, monkeypatch, client, "--watch", "--interval", "0.01")
    assert code == 0 and err == "" and out.count("--- ") == 2


def test_a_coordinator_that_does_not_answer_is_shown_and_the_watch_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    down = MpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect \x1b[2J")
    code, out, _ = _run(tmp_path, monkeypatch, FakeClient(fail=[down, None]), "--watch", "--interval", "0.01", "--count", "2")
    assert code == 0 and "NO ANSWER: UNAVAILABLE: failed to connect \\x1b[2J" in out and "\x1b" not in out
    assert out.split("--- ")[2].count("node-1") == 1
    code, out, _ = _run(tmp_path, monkeypatch, FakeClient(fail=[down]), "--watch", "--interval", "0.01", "--count", "1")
    assert code == 3  # the last refresh had no answer


def test_json_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = _run(tmp_path, monkeypatch, FakeClient(), "--watch", "--interval", "0.01", "--count", "2", "--json")
    docs = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(docs) == 2 and out.isascii()
    assert docs[0]["signing_rate_per_s"] is None and docs[1]["signing_rate_per_s"] > 0
    assert [n["name"] for n in docs[1]["nodes"]] == ["node-1", "node-2", "node-3"] and docs[1]["keys"][0]["epoch"] == 2
    assert docs[1]["request_latency_s"] == pytest.approx(0.15) and docs[1]["signing_latency_s"] == pytest.approx(0.05)
    assert docs[1]["anomalies_active"] == ["key_burst"]
    assert docs[1]["sessions_live"] == {"dkg": 0.0, "sign": 2.0} and docs[1]["metrics_unreachable"] == ["node-2"]


def test_the_rich_live_view_on_a_terminal() -> None:
    out = io.StringIO()
    snaps = iter(_snaps(FakeEndpoints(), n=2))
    code = cli_watch.watch(lambda: next(snaps), 0.01, out, tty=True, count=2, sleep=lambda s: None)
    text = out.getvalue()
    assert code == 0 and "node-1" in text and "Activity" in text and "10.00/s" in text
    # the server's text is shown as escaped text: neither its escape sequence nor rich markup acts
    assert "red]evil[/]" in text and "\x1b[31m[bold" not in text and "\u202e" not in text and "\\u202e" in text


def test_bad_interval_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = _run(tmp_path, monkeypatch, FakeClient(), "--watch", "--interval", "0")
    assert code == 2 and "--interval" in err


@pytest.mark.parametrize("argv", [("--interval", "5"), ("--interval", "0.5", "--json")])
def test_interval_without_watch_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...]) -> None:
    client = FakeClient()
    code, out, err = _run(tmp_path, monkeypatch, client, *argv)
    assert code == 2 and out == "" and client.calls == 0  # nothing asked of the coordinator
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert any("--interval" in ln and "--watch" in ln for ln in lines), err
    code, out, _ = _run(tmp_path, monkeypatch, FakeClient(), "--interval", "0.01", "--count", "1")  # --count watches
    assert code == 0 and out.count("--- ") == 1


def test_ctrl_c_during_a_snapshot_ends_the_watch_after_it_never_inside_a_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the fresh-clone suite (issue 14): SIGINT landing inside a gRPC call of a snapshot
    could leave the channel locked and the process hung at exit; now it only sets a flag."""
    import io
    import os
    import signal as _signal

    from mpcnet.client import cli_watch

    calls: list[str] = []

    def take(client: object, endpoints: object, note: object, get: object, timeout: float) -> object:
        calls.append("take")
        if len(calls) == 2:
            os.kill(os.getpid(), _signal.SIGINT)  # arrives "inside the call": must not raise here
            calls.append("call finished")
        return cli_watch.Snapshot(at=float(len(calls)), wall=0.0, status=None, error="down")

    monkeypatch.setattr(cli_watch, "take", take)
    monkeypatch.setattr(cli_watch, "plain_lines", lambda prev, cur: ["--- snapshot"])
    out = io.StringIO()
    before = _signal.getsignal(_signal.SIGINT)
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)  # as in the CLI (a test worker may ignore SIGINT)
    try:
        assert cli_watch.run_watch(object(), None, 0.01, out, tty=False) == cli_watch.EXIT_OK  # type: ignore[arg-type]
        restored = _signal.getsignal(_signal.SIGINT)
    finally:
        _signal.signal(_signal.SIGINT, before)
    assert calls == ["take", "take", "call finished"]
    assert out.getvalue().count("--- snapshot") == 2
    assert restored is _signal.default_int_handler  # the watch put back the handler it found
