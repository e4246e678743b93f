"""The ``roster`` kind of lifecycle proposals (issue 11 item 3): an admin proposes a roster
change (add a node, revoke one, rotate a node's keys, change an endpoint) with its own
signature, other admins add theirs with ``ApproveLifecycleProposal``, and at the admin quorum
the coordinator applies it (:meth:`coordinator.roster.RosterBook.apply`: verified again as the
next link of the chain, stored with its audit entry, pushed to every node, each of which
verifies it against its own admin set). A membership change then starts the roster-implied
reshares it calls for (:meth:`coordinator.keyops.KeyOperations.follow_roster`), whose ids the
applied proposal lists (so ``mpc node remove`` / ``add`` can wait for them).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from coordinator.lifecycle_proposals import Proposed
from coordinator.roster import RosterBook
from governance.errors import GovernanceError
from governance.policy import AdminSignature
from governance.roster import Roster, SignedRosterChange, active_entries
from mpcnet.common.rpc import RpcError

KIND = "roster"
Code = grpc.StatusCode
COMMIT_WAIT_S = 20.0  # how long a roster change waits for key operations to finish switching nodes it changes


class RosterProposals:
    """``decode`` and ``apply`` of the ``roster`` kind for :class:`LifecycleProposals`."""

    def __init__(
        self, rosters: RosterBook, follow: Callable[[Roster | None, Roster], list[str]],
        committing: Callable[[set[int]], list[str]] = lambda nodes: [],
    ) -> None:
        self.rosters = rosters
        self.follow = follow
        self.committing = committing  # ids of committing key operations involving these nodes
        self.wait_s = COMMIT_WAIT_S

    def decode(self, data: bytes) -> Proposed:
        """A proposed change: well formed, for this cluster, and the next link of the roster in
        force (else INVALID_ARGUMENT / FAILED_PRECONDITION naming ``signed_change.<field>``)."""
        try:
            signed = SignedRosterChange.from_bytes(data)
        except GovernanceError as e:
            raise RpcError(Code.INVALID_ARGUMENT, f"signed_change.{e.field}: {e.reason}") from None
        change = signed.change
        current = self.rosters.current()
        if current is None:
            raise RpcError(
                Code.FAILED_PRECONDITION, "signed_change: this coordinator has no signed roster (config governance.roster_history)"
            )
        if change.governance_root != self.rosters.cfg.admin_set.digest():
            raise RpcError(Code.PERMISSION_DENIED, "signed_change.governance_root: names another cluster or admin set")
        if self._in_force(signed):
            pass  # applied before a kill (or a failing store) cut its proposal short: apply() is a no-op
        elif change.previous_digest != current.digest() or change.new_roster.version != current.version + 1:
            raise RpcError(
                Code.FAILED_PRECONDITION,
                f"signed_change.previous_digest: does not extend the roster in force (version {current.version}); "
                "make the change again from the current roster",
            )

        def rebuild(sigs: tuple[AdminSignature, ...]) -> bytes:
            return SignedRosterChange(change, sigs).to_bytes()

        new = change.new_roster
        details: dict[str, str | int | bool] = {
            "version": new.version, "epoch": new.epoch, "roster_digest": new.digest().hex(),
            "active": ",".join(str(e.index) for e in active_entries(new)),
            "revoked": ",".join(str(e.index) for e in new.entries if not e.active),
        }
        return Proposed(change.digest()[:16].hex(), change.encode(), signed.signatures, rebuild, details)

    def apply(self, data: bytes, actor: str) -> list[str]:
        """At the admin quorum: apply the change (the roster's listeners push it to the nodes),
        then, for a membership change, start the reshares it calls for (in the background).
        Returns their operation ids."""
        old = self.rosters.current()
        signed = SignedRosterChange.from_bytes(data)
        if self._in_force(signed):  # applied already: the proposal is recorded applied, nothing runs again
            return []
        self._wait_for_commits(old, signed.change.new_roster)
        new = self.rosters.apply(signed, actor)
        before = None if old is None else tuple(e.index for e in active_entries(old))
        if before == tuple(e.index for e in active_entries(new)):
            return []
        return self.follow(old, new)

    def _in_force(self, signed: SignedRosterChange) -> bool:
        """Whether ``signed``'s change is the last one applied (review 2: a kill between the
        apply and the proposal's record left the proposal pending at its quorum for ever, its
        decode refusing it as not extending the roster in force)."""
        history = self.rosters.signed_history()
        return bool(history) and history[-1].change.digest() == signed.change.digest()

    def _wait_for_commits(self, old: Roster | None, new: Roster) -> None:
        """A change that revokes a node or replaces its keys waits (up to ``wait_s``) for the key
        operations that are switching that node to a new epoch: commit certificates are checked
        against the active roster's keys, so a node that had not switched yet could no longer
        verify its certificate. FAILED_PRECONDITION naming them if they do not finish in time
        (nothing is applied; approve again once they are done)."""
        if old is None:
            return
        changed = set()
        for e in old.entries:
            n = new.entry(e.index)
            if e.active and n is not None and (n.keys() != e.keys() or n.status != e.status):
                changed.add(e.index)
        if not changed:
            return
        deadline = time.monotonic() + self.wait_s
        while True:
            busy = self.committing(changed)
            if not busy:
                return
            if time.monotonic() >= deadline:
                raise RpcError(
                    Code.FAILED_PRECONDITION,
                    f"signed_change: key operation(s) {', '.join(busy)} still switch node(s) {sorted(changed)} to a new epoch; "
                    "the roster change waits for them (their certificates are checked against the nodes' current keys): "
                    "approve it again once `mpc key operations` shows them done",
                )
            time.sleep(0.5)
