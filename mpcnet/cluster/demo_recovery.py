"""The backup and recovery demo behind ``scripts/demo-recovery`` (issue 12, "Done means").

Against a fresh local 3-of-5 cluster, every step through the ``mpc`` and ``mpc-cluster``
command lines:

1. three recovery officers make their age key pairs (``mpc officer keygen``), each in a
   directory of their own (their machine: nothing of it is in the cluster directory);
2. admin1 proposes the recovery configuration (officers 1..3, quorum 2 of 3, export quorum 3,
   a drill every 30 days) and admin2 approves it, pinned by its digest;
3. admin1 creates a key and requester1 signs (approver1 and approver2 approve);
4. the key's backup bundle (made by the nodes automatically) is exported and verified: publicly
   (no key), then by officer1 with her recovery key;
5. a drill with officer1's and officer2's keys: every node reconstructs its own share from the
   officers' pieces in memory, checks it, destroys it and reports per node and per officer;
6. nodes 3, 4 and 5 are wiped (``mpc-cluster wipe-node``: process killed, data and keys
   deleted): 2 of 5 nodes are left, fewer than the threshold 3, so the key cannot sign;
7. each lost node is replaced: a new host with fresh keys (``mpc-cluster replace-node``), the
   roster rotates its entry to them (``mpc node replace``, approved), ``mpc-cluster up`` starts it;
8. admin1 orders the restore of shares 3, 4, 5 (``mpc recovery restore``, its follow-up a
   refresh), admin2 approves; officer1 and officer2 contribute (``mpc recovery contribute``:
   each verifies the order, the bundle and the target nodes' keys, then re-encrypts her pieces
   to the new nodes); the nodes reconstruct their shares, the refresh runs;
9. requester1 signs again: the signature is checked with OpenSSL under the key's original
   public key; a new bundle of the new epoch supersedes the old one.

Exit codes: 0 success, 1 a step failed (its output is shown), 2 usage, 130 interrupted. The
cluster is stopped at the end and its temporary directory deleted unless ``--keep``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from governance.text import escape
from mpcnet.cluster.demo import _json, _run, sign_and_check
from mpcnet.cluster.launcher import child_env
from mpcnet.common import cliutil
from mpcnet.common.cliutil import UInt
from mpcnet.common.keystore import MAX_SCRYPT_N, MIN_SCRYPT_N

PROG = "scripts/demo-recovery"
OFFICERS = ("officer1", "officer2", "officer3")
LOST = (3, 4, 5)
RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}")
WAIT_S = 300.0


def _field(doc: Any, *names: str) -> Any:
    """The first of ``names`` present in the JSON object ``doc`` (or in its ``proposal``/
    ``ceremony`` member); None if none is."""
    for d in (doc, doc.get("proposal") if isinstance(doc, dict) else None, doc.get("ceremony") if isinstance(doc, dict) else None):
        if isinstance(d, dict):
            for n in names:
                if n in d:
                    return d[n]
    return None


def _items(doc: Any, *names: str) -> list[Any]:
    """A JSON list, or the first list member of ``doc`` named in ``names``."""
    if isinstance(doc, list):
        return doc
    for n in names:
        if isinstance(doc, dict) and isinstance(doc.get(n), list):
            return list(doc[n])
    return []


class Demo:
    def __init__(self, d: Path, home: Path) -> None:
        self.d = d
        self.home = home  # the officers' machines, the exported bundle, the enrolment files
        self.public_key = ""
        self.key_id = ""
        self.signatures = 0

    def mpc(self, who: str, *args: str) -> list[str]:
        return ["mpcnet.client.cli", "--cluster", str(self.d), "--as", who, *args]

    def recovery_key(self, officer: str) -> Path:
        return self.home / officer / "recovery.key"

    def poll(self, args: list[str], what: str, done: Callable[[Any], bool], timeout: float = WAIT_S) -> Any:
        """Run ``args`` (JSON out) until ``done(doc)``; exit naming ``what`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            p = subprocess.run([sys.executable, "-m", *args], env=child_env(), capture_output=True, text=True)
            try:  # a failed ceremony exits 1 with its JSON: done() decides
                doc = json.loads(p.stdout)
            except ValueError:
                doc = None
            if doc is not None and done(doc):
                return doc
            if time.monotonic() > deadline:
                sys.stderr.write(p.stdout + p.stderr)
                raise SystemExit(f"demo: {what}: not done after {timeout:g} s")
            time.sleep(1.0)

    def sign(self, step: str) -> None:
        """Sign a fresh digest and verify it with OpenSSL under the key's original public key
        (:func:`mpcnet.cluster.demo.sign_and_check`)."""
        self.signatures += 1
        sign_and_check(self.mpc, self.key_id, self.public_key, self.signatures, "recovery", step)

    def approve(self, proposal: dict[str, Any], what: str) -> dict[str, Any]:
        """admin2 approves admin1's proposal (pinned by its digest); its key operations must end done."""
        out: dict[str, Any] = _json(self.mpc("admin2", "lifecycle", "approve", str(_field(proposal, "proposal_id")),
                                             "--expect-digest", str(_field(proposal, "digest")), "--json"),
                                    f"mpc lifecycle approve ({what})")
        state = _field(out, "state")
        if state != "applied":
            raise SystemExit(f"demo: {what} is {escape(str(state))}, not applied: {escape(str(_field(out, 'error')))}")
        for op in out.get("operations", []):
            print(f"   key operation {op['operation_id']} ({op['kind']}): {op['state'].upper()}")
            if op["state"] != "done":
                raise SystemExit(f"demo: key operation {op['operation_id']} {op['state']}: {escape(str(op.get('error')))}")
        return out

    def propose(self, what: str, *args: str) -> dict[str, Any]:
        """admin1 proposes (``mpc ... --json``), admin2 approves; the approval's output."""
        doc = _json(self.mpc("admin1", *args, "--json"), f"mpc {' '.join(args[:3])}")
        p = doc.get("proposal", doc)
        if _field(p, "state") == "applied":
            return dict(doc)
        print(f"   admin1 proposed {_field(p, 'proposal_id')} (digest {str(_field(p, 'digest'))[:16]}...); admin2 approves")
        return self.approve(p, what)

    def backups(self) -> list[dict[str, Any]]:
        return _items(_json(self.mpc("auditor1", "backup", "list", "--key", self.key_id, "--json"), "mpc backup list"), "backups")

    def wait_backup(self, epoch: int) -> dict[str, Any]:
        """The key's current bundle at ``epoch`` (the nodes make it right after keygen or a
        key operation; the coordinator also retries in the background)."""
        def fresh(doc: Any) -> bool:
            return any(b.get("epoch") == epoch and not b.get("superseded") for b in _items(doc, "backups"))
        doc = self.poll(self.mpc("auditor1", "backup", "list", "--key", self.key_id, "--json"), f"a backup of epoch {epoch}", fresh)
        return next(b for b in _items(doc, "backups") if b.get("epoch") == epoch and not b.get("superseded"))


def _step(n: int, text: str) -> None:
    print(f"{n}. {text}")


@click.command(name=PROG, context_settings={"help_option_names": ["-h", "--help"]},
               epilog="\b\nExit codes: 0 success, 1 a step failed, 2 usage error, 130 interrupted (Ctrl-C).")
@click.option("--keep", is_flag=True, help="leave the cluster running and its directory in place")
@click.option("--scrypt-n", type=UInt(MIN_SCRYPT_N, MAX_SCRYPT_N, show_range=True), default=2**15, show_default=True,
              help="scrypt cost of the cluster's keystores and stores, a power of two (tests use 1024)")
def demo_recovery(keep: bool, scrypt_n: int) -> int:
    """Enrol officers, back up a key, export and verify the bundle, drill, wipe three of five
    nodes, replace them, restore their shares, refresh and sign with the same public key."""
    if scrypt_n & (scrypt_n - 1):
        raise click.UsageError(f"scrypt-n: must be a power of two in [2**10, 2**20], got {scrypt_n}")
    home = Path(tempfile.mkdtemp(prefix="mpcnet-recovery-"))
    d = home / "cluster"
    demo = Demo(d, home)
    started = False
    try:
        _step(1, f"starting a local 3-of-5 cluster in {escape(str(d))}")
        _run(["mpcnet.cluster.cli", "up", "--dir", str(d), "--nodes", "5", "--threshold", "3", "--quiet",
              "--scrypt-n", str(scrypt_n)], "mpc-cluster up")
        started = True

        _step(2, "three recovery officers make their age key pairs, each on her own machine (mpc officer keygen)")
        recipients = {}
        for o in OFFICERS:
            demo.recovery_key(o).parent.mkdir(mode=0o700)
            out = _run(["mpcnet.client.cli", "officer", "keygen", "--out", str(demo.recovery_key(o))], f"mpc officer keygen ({o})")
            m = RECIPIENT.search(out)
            if m is None:
                raise SystemExit(f"demo: mpc officer keygen printed no age recipient: {escape(out[:200])}")
            recipients[o] = m.group(0)
            print(f"   {o}: {recipients[o]}")

        _step(3, "admin1 sets the recovery configuration (2 of 3 officers restore; export quorum 3; drills every 30 days); admin2 approves")
        officers = [a for o in OFFICERS for a in ("--officer", f"{o}={recipients[o]}")]
        demo.propose("the recovery configuration", "recovery", "officers", "set", *officers, "--quorum", "2",
                     "--export-quorum", "3", "--drill-days", "30")
        shown = _json(demo.mpc("auditor1", "recovery", "officers", "show", "--json"), "mpc recovery officers show")
        print(f"   recovery configuration version {_field(shown, 'version')}, quorum {_field(shown, 'quorum')}")

        _step(4, "admin1 creates a key (DKG on nodes 1..5); requester1 signs")
        key = _json(demo.mpc("admin1", "keygen", "--json"), "mpc keygen")
        demo.key_id, demo.public_key = key["key_id"], key["public_key"]
        print(f"   key {demo.key_id}, public key {demo.public_key}")
        demo.sign("keygen")

        _step(5, "the nodes back the key up automatically; officer1 exports the bundle; anyone verifies it, officer1 with her key")
        first = demo.wait_backup(0)
        print(f"   bundle {str(first.get('bundle_digest'))[:16]}... of epoch 0")
        bundle = home / "bundle.mpcbackup"
        _run(demo.mpc("officer1", "backup", "export", "--key", demo.key_id, "--out", str(bundle)), "mpc backup export")
        public = _json(demo.mpc("auditor1", "backup", "verify", "--bundle", str(bundle), "--json"), "mpc backup verify (public)")
        print(f"   public check of bundle {str(public.get('bundle_digest'))[:16]}... (epoch {public.get('epoch')}, recovery configuration "
              f"{public.get('recovery_config_version')}): OK (signatures, roster, commitments, public shares, complete)")
        mine = _json(demo.mpc("officer1", "backup", "verify", "--bundle", str(bundle), "--recovery-key",
                              str(demo.recovery_key("officer1")), "--json"), "mpc backup verify (officer1's pieces)")
        officer = mine.get("officer") or {}
        if not officer.get("ok"):
            raise SystemExit(f"demo: officer1's pieces do not check: {escape(json.dumps(officer)[:500])}")
        print(f"   officer1 (officer {officer.get('index')}): every piece decrypts and matches its commitments")

        _step(6, "a recovery drill with officer1's and officer2's keys (each node checks its own share, then destroys it)")
        drill = _json(demo.mpc("officer1", "backup", "drill", "--key", demo.key_id,
                               "--recovery-key", str(demo.recovery_key("officer1")),
                               "--recovery-key", str(demo.recovery_key("officer2")), "--json"), "mpc backup drill")
        state = _field(drill, "state")
        for t in _items(drill.get("ceremony", drill) if isinstance(drill, dict) else drill, "targets"):
            outcomes = ", ".join(f"{o.get('name') or o.get('officer')}: {o.get('outcome')}" for o in t.get("outcomes", []))
            print(f"   node {t.get('node')} (share {t.get('share_index')}): {t.get('state')} ({outcomes})")
        if state != "done":
            raise SystemExit(f"demo: the drill ended {escape(str(state))}: {escape(str(_field(drill, 'error')))}")
        print("   drill: ok")
        st = _json(demo.mpc("auditor1", "status", "--json"), "mpc status")
        row: dict[str, Any] = next((b for b in st.get("backups", []) if b.get("key_id") == demo.key_id), {})
        if not row.get("last_drill_unix_ms") or row.get("drill_overdue"):
            raise SystemExit(f"demo: mpc status does not show the drill: {escape(json.dumps(row)[:300])}")
        print(f"   mpc status: key backed up ({row.get('backed_up')}), last drill {row.get('last_drill_outcome') or 'ok'}, not overdue")

        _step(7, f"disaster: nodes {','.join(map(str, LOST))} are wiped (process killed, data and keys deleted); 2 of 5 left, threshold 3")
        for n in LOST:
            _run(["mpcnet.cluster.cli", "wipe-node", "--dir", str(d), str(n), "--quiet"], f"mpc-cluster wipe-node {n}")

        _step(8, "each lost node gets a new host (fresh keys, empty store); the roster rotates its entry to them; up starts them")
        for n in LOST:
            enrol = home / f"enrolment-node-{n}.json"
            _run(["mpcnet.cluster.cli", "replace-node", "--dir", str(d), str(n), "--out", str(enrol), "--quiet"],
                 f"mpc-cluster replace-node {n}")
            demo.propose(f"replacing node {n}", "node", "replace", str(n), "--enrolment", str(enrol))
        _run(["mpcnet.cluster.cli", "up", "--dir", str(d), "--quiet"], "mpc-cluster up (starts the replaced nodes)")

        def reached(doc: Any) -> bool:  # the coordinator's view (its channel to a restarted host may be backing off)
            return {n.get("index") for n in doc.get("nodes", []) if n.get("healthy")} >= set(LOST)
        demo.poll(demo.mpc("auditor1", "status", "--json"), "the coordinator reaching the new nodes", reached)
        print(f"   the coordinator reaches nodes {','.join(map(str, LOST))} (new keys, empty stores)")

        _step(9, f"admin1 orders the restore of shares {','.join(map(str, LOST))} (follow-up: a refresh); admin2 approves")
        demo.propose("the restore order", "recovery", "restore", "--key", demo.key_id, "--nodes", ",".join(map(str, LOST)),
                     "--reason", "demo: nodes 3-5 lost")

        def collecting(doc: Any) -> bool:
            return any(c.get("kind") == "restore" and c.get("key_id") == demo.key_id for c in _items(doc, "ceremonies"))
        listing = demo.poll(demo.mpc("officer1", "recovery", "status", "--json"), "the restore ceremony", collecting)
        ceremony = next(c for c in _items(listing, "ceremonies") if c.get("kind") == "restore" and c.get("key_id") == demo.key_id)
        cid = str(ceremony["ceremony_id"])
        print(f"   ceremony {cid}")

        _step(10, "officer1 and officer2 verify the order, the bundle and the new nodes' keys, and contribute their pieces")
        for o in OFFICERS[:2]:
            _run(demo.mpc(o, "recovery", "contribute", "--ceremony", cid, "--recovery-key", str(demo.recovery_key(o))),
                 f"mpc recovery contribute ({o})")
        final = demo.poll(demo.mpc("auditor1", "recovery", "status", cid, "--json"), "the restore and its refresh",
                          lambda doc: _field(doc, "state") in ("done", "failed"))
        if _field(final, "state") != "done":
            raise SystemExit(f"demo: the restore ended {escape(str(_field(final, 'state')))}: {escape(str(_field(final, 'error')))}")
        print(f"   restored nodes {','.join(map(str, LOST))}; follow-up refresh {_field(final, 'follow_up_operation')}: done")

        _step(11, "requester1 signs with the restored key")
        demo.sign("the restore")
        newest = demo.wait_backup(1)
        print(f"   new bundle {str(newest.get('bundle_digest'))[:16]}... of epoch 1; "
              f"{sum(1 for b in demo.backups() if b.get('superseded'))} older bundle(s) superseded")
    finally:
        if started and not keep:
            print("12. stopping the cluster")
            subprocess.run([sys.executable, "-m", "mpcnet.cluster.cli", "stop", "--dir", str(d)], env=child_env(), capture_output=True)
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    print(f"done: {demo.signatures} signatures, every one valid under {demo.public_key}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``scripts/demo-recovery``: the exit code; never a traceback."""
    return cliutil.run(demo_recovery, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
