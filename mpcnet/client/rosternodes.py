"""The nodes a client with ``--genesis`` pushes to directly (issue 13): the active nodes of the
roster in force, not only those of the genesis's roster version 1.

``mpc --endpoint ... --genesis FILE`` knows the admin set and roster version 1 from the genesis.
After roster changes (a node added, removed, rotated or moved) the commands that reach the nodes
directly (``policy attest``, ``policy push``, ``roster push``) first fetch the roster history
from the coordinator and verify it against the genesis's admin set
(:meth:`mpcnet.client.lifecycle.LifecycleMixin.roster`: an admin quorum on every change, no
rollback); the endpoints of its active nodes replace the genesis's. A coordinator that cannot be
reached leaves the genesis's endpoints (said on stderr) and an outcome row ``roster`` that is an
error: the command still reaches the nodes it knows, but never reports success without having
learnt the nodes of the roster in force (a coordinator failing only ``GetRoster`` would otherwise
hide every node added since the genesis). A history that does not verify is an error
(DATA_LOSS), never a reason to trust the coordinator's list.
"""

from __future__ import annotations

from typing import Any

import grpc

from governance.roster import active_entries
from mpcnet.client import cli_render as view
from mpcnet.client.errors import MpcError

_NO_ANSWER = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def follow_verified_roster(client: Any) -> dict[str, str]:
    """Replace ``client.node_endpoints`` (name -> host:port) with the active nodes of the roster
    in force, verified against ``client.admin_set``; returns the outcome rows to add to the
    command's report: none, or (unreachable coordinator: the endpoints the client has are kept,
    with a note) ``{"roster": "error: CODE: ..."}``. MpcError (DATA_LOSS, FAILED_PRECONDITION)
    propagates."""
    try:
        roster = client.roster().roster
    except MpcError as e:
        if e.code not in _NO_ANSWER:
            raise
        view.err(f"mpc: roster: the coordinator did not answer ({e.code.name}); using the genesis's nodes (roster version 1)")
        return {"roster": f"error: {e.code.name}: the roster in force is unknown; only the genesis's nodes were tried "
                          "(nodes added since the genesis were not reached)"}
    client.node_endpoints = {e.name: e.endpoint for e in active_entries(roster)}
    return {}
