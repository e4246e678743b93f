"""Presignature pools in the ``mpc`` CLI (issue 14), with a fake client (the coordinator's pool
side is built on another branch): ``mpc status`` shows each pool's depth (key prefix, path,
signer set, ready/assigned/filling of target/cap, the label last and escaped) and whether pools
are enabled; ``mpc keys`` shows ``presigs N``; ``mpc status --watch`` a pool line; ``--json``
carries the figures; a malformed pool answer is shown as such and the rest still prints."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from mpcnet.client import cli, cli_pools, cli_watch
from mpcnet.client.sdk import Key
from mpcnet.wire.mpc.v1 import coordinator_pb2

G = bytes.fromhex("0279BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798")
KID = bytes([7]) * 32
HOSTILE = "pay\x1b[2J\u202eroll\nforged"


def _status(enabled: bool = True, pools: int = 1, **pool: Any) -> coordinator_pb2.ClusterStatusResponse:
    st = coordinator_pb2.ClusterStatusResponse(threshold=2, parties=3, presign_enabled=enabled)
    st.nodes.add(index=1, name="node-1", endpoint="localhost:1", healthy=True, policies_synced=True)
    for i in range(pools):
        fields: dict[str, Any] = dict(key_id=KID, epoch=1, derivation_path=[i] if i else [], signers=[1, 2], ready=8,
                                      assigned=0, filling=0, target=8, refill_at=4, cap=32)
        fields.update(pool)
        st.pools.append(coordinator_pb2.PoolStatus(**fields))
    return st


class Fake:
    def __init__(self, st: coordinator_pb2.ClusterStatusResponse) -> None:
        self.st = st
        self.listed = 0

    def __enter__(self) -> Fake:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def cluster_status(self) -> coordinator_pb2.ClusterStatusResponse:
        return self.st

    def list_keys(self) -> list[Key]:
        self.listed += 1
        return [Key(KID, HOSTILE, G, bytes(32), 2, 3, "active", 1, epoch=1, committee=(1, 2, 3), presignatures_ready=13)]


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fake: Fake, *argv: str) -> str:
    monkeypatch.setattr(cli, "_client", lambda ap, opts: fake)
    assert cli.main(["--cluster", "unused", "--as", "auditor1", *argv]) == 0
    out, err = capsys.readouterr()
    for text in (out, err):
        assert not any(not c.isprintable() and c != "\n" for c in text), repr(text)
    return out


def test_status_shows_each_pool_and_the_label_last_escaped(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(monkeypatch, capsys, Fake(_status(pools=2, ready=5, assigned=1, filling=4)), "status")
    lines = out.splitlines()
    [summary] = [ln for ln in lines if ln.startswith("presign pools")]
    assert "enabled: 2 pools, 10 ready (0 at target), 2 assigned, 8 filling" in summary
    rows = [ln for ln in lines if ln.startswith("pool ")]
    assert len(rows) == 2
    assert rows[0].startswith(f"pool {KID.hex()[:10]}  ")
    assert "m  signers 1,2  epoch 1  ready 5  assigned 1  filling 4  (target 8, refill at 4, cap 32)" in rows[0]
    assert " m/1  signers 1,2" in rows[1]
    assert rows[0].endswith("label pay\\x1b[2J\\u202eroll\\nforged")  # one line, escaped, last


def test_status_says_when_pools_are_disabled_and_lists_no_keys(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    fake = Fake(_status(enabled=False, pools=0))
    out = _run(monkeypatch, capsys, fake, "status")
    assert "presign pools    disabled (coordinator config presign.enabled" in out
    assert fake.listed == 0  # no pools: no ListKeys for their labels


def test_status_json_carries_the_pools(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(monkeypatch, capsys, Fake(_status()), "--json", "status")
    doc = json.loads(out)
    assert doc["presign_enabled"] is True and doc["pools_error"] is None
    assert doc["pools"] == [{"key_id": KID.hex(), "epoch": 1, "path": "m", "signers": [1, 2], "ready": 8, "assigned": 0,
                             "filling": 0, "target": 8, "refill_at": 4, "cap": 32, "used_total": 0, "discarded_total": 0,
                             "label": HOSTILE}]


def test_a_malformed_pool_is_shown_as_such_and_the_status_still_prints(monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(monkeypatch, capsys, Fake(_status(signers=[2, 1])), "status")
    assert "presign pools    MALFORMED ANSWER: pools.signers:" in out and "node-1" in out
    doc = json.loads(_run(monkeypatch, capsys, Fake(_status(key_id=b"\x01")), "--json", "status"))
    assert doc["presign_enabled"] is None and doc["pools"] == [] and doc["pools_error"].startswith("pools.key_id:")


def test_many_pools_are_counted_past_the_row_limit() -> None:
    shown = cli_pools.load(None, _status(pools=cli_pools.MAX_POOL_ROWS + 3))
    rows = cli_pools.status_rows(shown)
    assert len(rows) == 1 + cli_pools.MAX_POOL_ROWS + 1 and rows[-1][1].startswith("3 more")
    assert len(cli_pools.status_doc(shown)["pools"]) == cli_pools.MAX_POOL_ROWS + 3


def test_keys_show_ready_presignatures_before_the_label(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(monkeypatch, capsys, Fake(_status()), "keys")
    assert "epoch 1 nodes 1,2,3  presigs 13  pay\\x1b[2J" in out
    doc = json.loads(_run(monkeypatch, capsys, Fake(_status()), "--json", "keys"))
    assert doc[0]["presignatures_ready"] == 13


def _snap(st: coordinator_pb2.ClusterStatusResponse | None) -> cli_watch.Snapshot:
    return cli_watch.Snapshot(1.0, 1_700_000_000.0, st, "" if st else "UNAVAILABLE: down")


def test_watch_has_a_pool_line_and_json_figures() -> None:
    lines = cli_watch.plain_lines(None, _snap(_status(pools=2, ready=3)))
    assert "  presignature pools: enabled: 2 pools, 6 ready (0 at target), 0 assigned, 0 filling" in lines
    doc = cli_watch.snapshot_doc(None, _snap(_status(pools=2, ready=3)))
    assert doc["presign_enabled"] is True and doc["presignatures_ready"] == 6 and len(doc["pools"]) == 2
    off = cli_watch.plain_lines(None, _snap(_status(enabled=False, pools=0)))
    assert any(ln.startswith("  presignature pools: disabled") for ln in off)
    bad = cli_watch.plain_lines(None, _snap(_status(derivation_path=[2**31])))
    assert any("MALFORMED ANSWER: pools.derivation_path" in ln for ln in bad)
    down = cli_watch.snapshot_doc(None, _snap(None))
    assert down["presign_enabled"] is None and down["pools"] == []
    assert not any("presignature pools" in ln for ln in cli_watch.plain_lines(None, _snap(None)))


def test_watch_end_to_end_prints_the_pool_line(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    code = cli_watch.run_watch(Fake(_status()), None, 0.01, out, tty=False, count=1)
    assert code == 0 and "presignature pools: enabled: 1 pool, 8 ready (1 at target)" in out.getvalue()


def test_request_show_says_a_request_was_signed_from_a_pool() -> None:
    from dataclasses import replace

    from mpcnet.client import cli_render
    from mpcnet.client.sdk import SignRequest
    from tests.network.test_sdk_request_substitution import info

    r = SignRequest.from_proto(info("r-1"))
    assert not any(k == "signed" for k, _ in cli_render.request_lines(r, None))
    rows = cli_render.request_lines(replace(r, presigned=True), None)
    assert ("signed", "in one round, from a pool presignature") in rows
