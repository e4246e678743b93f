"""``mpc status`` rows for keys without a bundle (issue 12, the 3 a.m. operator): what is wrong
(the coordinator's last collection failure, naming the node) and that it retries by itself."""

from __future__ import annotations

from mpcnet.client.cli_backup import status_doc, status_rows
from mpcnet.wire.mpc.v1 import coordinator_pb2


def _status(**kw: object) -> coordinator_pb2.ClusterStatusResponse:
    st = coordinator_pb2.ClusterStatusResponse(recovery_config_version=1)
    st.backups.append(coordinator_pb2.KeyBackupStatus(key_id=b"\x01" * 32, epoch=2, **kw))  # type: ignore[arg-type]
    return st


def test_a_key_without_a_bundle_shows_why_and_when_it_is_tried_next() -> None:
    why = "no backup part from node 3: UNAVAILABLE: connection refused (failed 4 time(s) in a row; next try in 240 s)"
    rows = status_rows(_status(backed_up=False, backup_error=why))
    assert rows[1] == (f"backup {'01' * 8}", f"epoch 2  NOT BACKED UP ({why})  last drill never")
    assert status_doc(_status(backed_up=False, backup_error=why))["backups"][0]["backup_error"] == why


def test_a_key_not_collected_yet_says_pending_and_caller_text_is_escaped() -> None:
    [_, row] = status_rows(_status(backed_up=False))
    assert "NOT BACKED UP (collection pending)" in row[1]
    [_, row] = status_rows(_status(backed_up=False, backup_error="node 2: \x1b[2Jgone"))
    assert "\x1b" not in row[1] and "node 2" in row[1]
