"""Test-only crash points of the coordinator's key operations, honoured only when the
coordinator config says ``test_mode: true`` (off by default).

The environment variable ``MPC_TEST_COORDINATOR_FAULT_FILE`` names a file that
:class:`CoordinatorFaults` reads at each durable step of a key operation
(:mod:`coordinator.keyops` calls it with the step's name). The file holds one JSON object::

    {"action": "crash" | "delay", "point": "recorded", "seconds": 5.0, "once": true}

Points, in the order an operation reaches them:

* ``recorded``: the session id and dealers are stored, no node has heard of the session;
* ``round-R``: the nodes answered round ``R`` (R = 1, 2, ...), before those messages are
  delivered;
* ``receipts``: every new-committee node returned its receipt and they form a certificate,
  before the decision;
* ``decided``: the decision transaction committed (state ``committing``), before any commit push;
* ``pushed``: a ``CommitEpoch`` push round ended with some nodes switched and some not.

And of the audit outbox flush (:mod:`coordinator.audit_flush`, any flush that has rows):

* ``audit-queued``: state changes committed with their outbox rows, before the batch is appended;
* ``audit-appended``: the batch is in the audit log, before it is dropped from the outbox.

And of one-round signing from a pool presignature (:mod:`coordinator.presigned`, issue 14):

* ``presig-assigned``: the assignment (and its attempt number) committed, before any signer hears of it;
* ``presig-partial``: ``SignPresigned`` reached the lowest signer only (in test mode the first
  send goes to it alone), before the others.

And of FROST signing (:mod:`coordinator.frost_sign`, issue 16):

* ``frost-assigned``: one fresh commitment per signer is assigned to (request, attempt) and
  committed, before any signer hears of the attempt.

Actions: ``crash`` exits the process at once (``os._exit(137)``, like ``kill -9``); ``delay``
sleeps ``seconds`` (at most :data:`MAX_DELAY_S`). Nothing else is possible: any other action
is ignored with a warning. With ``once`` (the default for ``crash``) the file is removed when
the fault fires, so the restarted coordinator behaves normally.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

ENV = "MPC_TEST_COORDINATOR_FAULT_FILE"
MAX_DELAY_S = 120.0
POINT = re.compile(
    r"recorded|round-[0-9]{1,2}|receipts|decided|pushed|audit-queued|audit-appended|presig-assigned|presig-partial|frost-assigned"
)
log = logging.getLogger("coordinator.faults")


class CoordinatorFaults:
    """The crash/delay hook for :attr:`coordinator.keyops.KeyOperations.fault`; ``path`` is the
    fault file (read at every point, so a test can write it while the coordinator runs)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        log.warning("TEST MODE: coordinator fault injection enabled from %s", path)

    def __call__(self, point: str) -> None:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(doc, dict) or doc.get("point") != point or not POINT.fullmatch(point):
            return
        action = doc.get("action")
        if action not in ("crash", "delay"):
            log.warning("TEST MODE: ignoring fault action %r (only crash and delay exist)", action)
            return
        if doc.get("once", action == "crash"):
            try:
                self.path.unlink()
            except OSError:
                pass
        log.warning("TEST MODE: injecting %s at key-operation point %s", action, point)
        if action == "crash":
            logging.shutdown()
            os._exit(137)
        seconds = doc.get("seconds", 0)
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
            time.sleep(min(max(float(seconds), 0.0), MAX_DELAY_S))


def fault_hook(test_mode: bool) -> Callable[[str], None] | None:
    """The hook for ``KeyOperations.fault``: None unless ``test_mode`` and the environment
    names a fault file."""
    path = os.environ.get(ENV) if test_mode else None
    return CoordinatorFaults(Path(path)) if path else None
