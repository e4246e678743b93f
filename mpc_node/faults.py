"""Test-only fault injection, honoured only when the node config says ``test_mode: true``.

The environment variable ``MPC_TEST_FAULT_FILE`` names a file that the node reads whenever it
produces a round's messages. The file holds one JSON object::

    {"action": "crash" | "tamper-payload" | "tamper-ote" | "tamper-signature" | "delay",
     "protocol": "dkg" | "sign" | "presign", "round": 2, "seconds": 5.0, "once": true, "receiver": 1}

``sign`` names the rounds of a signing session only; the rounds of a presign session (issue 14:
a pool refill, a signing session with presign parameters) are ``presign``, so a fault meant for
signing never fires in a background refill (nor the other way round).

* ``crash``: the process exits at once (like ``kill -9``) instead of answering round ``round``.
* ``tamper-payload``: flips a bit in every round-``round`` protocol payload *before* signing it
  (a malicious node: the peers' protocol checks must catch and name it).
* ``tamper-ote``: flips bit 0 of the last byte of every round-``round`` *direct* payload
  before signing it (only the one to party ``receiver`` if that is given and not 0). In signing
  round 2 that byte ends Bob's OT-extension message (the last row of ``t~``, which the KOS
  consistency check covers), so the receiving honest Alice's check fails and she bans the
  sender: a malicious node probing the check (selective failure), not a decoding error.
* ``tamper-signature``: flips a bit in every round-``round`` payload *after* signing it (an
  altered message: the peers' envelope checks must catch and name it).
* ``delay``: sleeps ``seconds`` before answering.
* step points of a refresh/reshare (``{"action": "crash" | "delay", "point": P}``, no
  ``protocol``/``round``; :meth:`FaultInjector.at`): ``reshare-stored`` (the session's outcome,
  pending share and receipt or retiring marker, is stored, the answer carrying the receipt not
  sent) and ``epoch-committed`` (the ``CommitEpoch`` transaction and its audit entry are
  written, the answer not sent) and ``presign-consumed`` (a ``SignPresigned`` consume transaction
  committed, the share not answered; issue 14) and ``presign-checking`` (a ``SignPresigned``
  passed the field and presignature checks, the approvals not checked yet: a ``delay`` there
  lets a request expire on its way, as a ``sign`` round delay does in the full protocol).
  ``audit-queued`` (a state change committed with its audit entry in the store's audit outbox,
  the entry not yet in the audit log; ``"tag"``: only for the entry of that action).
  Only ``crash`` and ``delay`` exist here. The rounds of a
  reshare session are ``{"protocol": "reshare", "round": R}`` as above (``crash`` exits instead
  of answering with round ``R``'s messages).
* governance install points (same form): ``policy-installed``, ``attestation-stored`` and
  ``roster-installed``: an ``InstallPolicy`` / ``InstallPolicyAttestation`` /
  ``InstallRosterChange`` transaction (the change with its audit entry queued in the store's
  outbox) committed, the outbox not flushed and the answer not sent. Likewise
  ``session-attestation-stored`` (an attestation carried by a signing session kept, with its
  ``policy-attest`` entry), ``roster-config-stored`` (at start, the config's roster changes the
  store lacked stored with their ``roster-install`` entry, the node not serving yet) and
  ``ban-recorded`` (a ban and its ``ban`` entry written to the store, the failing session's
  answer not sent, the other sessions of the key not aborted yet). ``key-switch-<step>``: after
  ``<step>`` of an operational key switch (``SWITCH_STEPS`` of :mod:`mpc_node.rotation`;
  ``key-switch-audited``: its ``key-rotation`` entry appended, the staged files not cleaned up;
  ``key-switch-prepared`` / ``key-switch-certificate``: a ``PrepareKeyRotation`` /
  ``InstallStagedCertificate`` wrote the staged files, their entry not appended yet).
  ``keygen-stored`` / ``key-activated`` / ``key-discarded``: a DKG's share stored pending / a
  ``CommitKey`` / a ``DiscardKey`` committed with its ``keygen`` / ``key-activate`` /
  ``key-discard`` entry queued, the answer not sent.
* ``store-unwritable`` (no ``protocol``/``round``): while the file says so, every write to the
  node's store fails like a full or failing disk (:meth:`FaultInjector.store_fault`).

With ``once`` (the default for ``crash``) the file is removed when the fault fires, so a
restarted node behaves normally.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

ENV = "MPC_TEST_FAULT_FILE"
# issue 16: ``nonce-consumed`` (a ``SignSchnorr`` consume transaction committed, the share not answered)
# issue 14 red team: ``audit-queued`` (a state change and its audit entry committed together to the
# store's audit outbox, the entry not yet appended to the audit log; the fault file's optional
# ``"tag"`` names the entry's action, e.g. ``key-activate``, or action/outcome, e.g.
# ``key-epoch/abandoned``, and the point fires only for such an entry)
POINTS = (
    "reshare-stored", "epoch-committed", "presign-consumed", "presign-checking", "nonce-consumed",
    "policy-installed", "attestation-stored", "roster-installed",  # governance installs (mpc_node/governance.py, roster_state.py)
    "audit-queued",
    "session-attestation-stored",  # an attestation carried by a signing session kept (mpc_node/governance.py)
    "roster-config-stored",  # at start: the config's roster changes the store lacked stored (mpc_node/roster_state.py)
    "ban-recorded",  # a ban written to the store (mpc_node/bans.py)
    # after each step of an operational key switch (mpc_node/rotation.py SWITCH_STEPS)
    "key-switch-marker", "key-switch-audit", "key-switch-tls-key", "key-switch-tls-cert", "key-switch-keystore",
    "key-switch-memory", "key-switch-audited", "key-switch-cleanup",
    "key-switch-prepared", "key-switch-certificate",  # PrepareKeyRotation / InstallStagedCertificate: staged, not audited
    "keygen-stored", "key-activated", "key-discarded",  # a DKG share stored pending, CommitKey, DiscardKey (mpc_node/service.py)
)
MAX_DELAY_S = 120.0
log = logging.getLogger("mpc_node.faults")


@dataclass(frozen=True)
class Fault:
    action: str
    protocol: str
    round: int
    seconds: float = 0.0
    receiver: int = 0  # tamper-ote: the only receiver whose direct payload is altered (0: all)

    def hits(self, receiver: int) -> bool:
        return self.receiver in (0, receiver)


class FaultInjector:
    def __init__(self, enabled: bool) -> None:
        path = os.environ.get(ENV) if enabled else None
        self.path = Path(path) if path else None
        if path and enabled:
            log.warning("TEST MODE: fault injection enabled from %s", path)

    def store_fault(self) -> str | None:
        """The injected reason every store write fails now (``store-unwritable``), else None."""
        if self.path is None:
            return None
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("action") != "store-unwritable":
            return None
        return "disk I/O error (TEST MODE: injected store fault)"

    def at(self, point: str, tag: str = "") -> None:
        """The step point ``point`` (see the module docstring) is reached: crash or delay if the
        fault file names it (and, if the file has a ``"tag"``, it equals ``tag`` or the part of
        ``tag`` before a ``/``: for ``audit-queued`` the entry's ``action/outcome``); anything
        else is ignored."""
        if self.path is None:
            return
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(doc, dict) or doc.get("point") != point or point not in POINTS:
            return
        if "tag" in doc and doc.get("tag") not in (tag, tag.partition("/")[0]):
            return
        action = doc.get("action")
        if action not in ("crash", "delay"):
            log.warning("TEST MODE: ignoring fault action %r at %s (only crash and delay exist)", action, point)
            return
        if doc.get("once", action == "crash"):
            try:
                self.path.unlink()
            except OSError:
                pass
        log.warning("TEST MODE: injecting fault %s at %s", action, point)
        if action == "crash":
            logging.shutdown()
            os._exit(137)
        seconds = doc.get("seconds", 0)
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
            time.sleep(min(max(float(seconds), 0.0), MAX_DELAY_S))

    def check(self, protocol: str, round: int) -> Fault | None:
        if self.path is None:
            return None
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if doc.get("protocol") != protocol or doc.get("round") != round:
            return None
        receiver = doc.get("receiver", 0)
        fault = Fault(
            str(doc.get("action")), protocol, round, float(doc.get("seconds", 0)),
            receiver if isinstance(receiver, int) and 0 <= receiver <= 65535 else 0,
        )
        if doc.get("once", fault.action == "crash"):
            try:
                self.path.unlink()
            except OSError:
                pass
        log.warning("TEST MODE: injecting fault %s at %s round %d", fault.action, protocol, round)
        if fault.action == "crash":
            logging.shutdown()
            os._exit(137)
        if fault.action == "delay":
            time.sleep(fault.seconds)
        return fault


def flip(data: bytes, pos: int = -1) -> bytes:
    """``data`` with one bit of byte ``pos`` flipped."""
    b = bytearray(data)
    b[pos] ^= 0x01
    return bytes(b)
