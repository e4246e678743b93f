"""'mpc' commands of the key lifecycle (issue 11): key refresh/reshare/operations, node
add/remove/rotate-keys, roster show, lifecycle list/show/approve.

\b
    mpc --as admin1 key refresh KEY [--reason TEXT] [--no-wait]
    mpc --as admin1 key reshare KEY --threshold T --nodes 1,2,4,5 [--reason TEXT] [--no-wait]
    mpc --as NAME   key operations [KEY]
    mpc --as admin1 node add --enrolment FILE [--cert FILE [--index N]] | node remove N
    mpc --as admin1 node rotate-keys N [--ca-cert F --ca-key F | --csr-out F | --cert F --csr F]
    mpc --as NAME   roster show | roster push
    mpc --as NAME   lifecycle list [--state pending] | lifecycle show ID
    mpc --as admin2 lifecycle approve ID [--expect-digest HEX] [--no-wait]

A proposal needs the admin quorum (2 in the dev cluster): propose as admin1, then approve as
admin2 (the command prints the line to run). Once applied, the command waits for the key
operations it started (a refresh or reshare; after a roster change, the reshares it implies)
unless ``--no-wait``; exit 0 if every one ended done, 1 if one failed, 3 on ``--timeout``.

Added to the ``mpc`` group by :func:`register` (called by :mod:`mpcnet.client.cli`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from governance.errors import GovernanceError
from governance.keyop import MAX_REASON_CHARS
from governance.roster import MAX_INDEX, RosterEntry
from governance.text import escape, quote
from mpcnet.client import cli as cli_mod, cli_render as view, recovery_proposals as recovery
from mpcnet.client.cli import (
    CONTEXT,
    KEY_ID,
    LEAF_EPILOG,
    CliUsage,
    _command,
    _global_options,
    _need_cluster_file,
    _need_signer,
    _opts,
    _show,
)
from mpcnet.client.cli_args import Exit
from mpcnet.client.lifecycle import PROPOSAL_STATES, KeyOperationView, LifecycleProposalView, describe_roster_change
from mpcnet.client.sdk import MpcClient, MpcError
from mpcnet.common.cliutil import Choice, Hex, Identifier, IndexList, InFile, PathArg, Text, UInt
from mpcnet.common.pki import CertPaths

MAX_ENROLMENT_BYTES = 64 * 1024


def _new_group(name: str, help: str) -> click.Group:
    @_global_options(top=False)
    def g() -> None:
        pass

    return click.group(name, help=help, epilog=LEAF_EPILOG, context_settings=CONTEXT)(g)


key_group = _new_group("key", "key lifecycle: refresh, reshare, operations")
node_group = _new_group("node", "the node roster: add, remove, rotate-keys")
roster_group = _new_group("roster", "the node roster: show, push")
lifecycle_group = _new_group("lifecycle", "roster change, key operation and recovery proposals: list, show, approve")


def register(root: click.Group) -> None:
    """Add the ``key``, ``node``, ``roster`` and ``lifecycle`` groups to ``root`` (the ``mpc`` group)."""
    for g in (key_group, node_group, roster_group, lifecycle_group):
        root.add_command(g)


register(cli_mod.cli)


def _client(opts: Any) -> MpcClient:
    """:func:`mpcnet.client.cli._client`, looked up at call time (tests replace it)."""
    c: MpcClient = cli_mod._client(None, opts)
    return c


NO_WAIT = click.option("--no-wait", is_flag=True, help="return once proposed/approved; do not wait for the key operations")
REASON = click.option("--reason", type=Text(MAX_REASON_CHARS), default="", help=f"why (one line, at most {MAX_REASON_CHARS} characters)")


# --- rendering ---------------------------------------------------------------------------------


def _operation_line(v: KeyOperationView) -> str:
    op = v.operation
    err = f"  error: {v.error}" if v.error else ""
    pending = f"  waiting for nodes {','.join(map(str, v.pending_nodes))}" if v.pending_nodes else ""
    return escape(
        f"{v.operation_id}  {v.state.upper():<10} {op.kind.name.lower():<7} key {op.key_id.hex()[:16]}  epoch {op.old_epoch}->"
        f"{op.new_epoch}  {op.old_threshold}-of-{','.join(map(str, op.old_committee))} -> "
        f"{op.new_threshold}-of-{','.join(map(str, op.new_committee))}  by {v.authorized_by}{pending}{err}"
    )


def _proposal_rows(c: MpcClient, p: LifecycleProposalView) -> list[view.Row]:
    d = p.as_dict()
    rows: list[view.Row] = [("proposal_id", p.proposal_id), ("kind", p.kind), ("state", p.state.upper()), ("digest", d["digest"])]
    signed = p.signed
    if p.kind == "roster":
        new = signed.change.new_roster  # type: ignore[union-attr]
        prev = None
        want = signed.change.previous_digest  # type: ignore[union-attr]
        try:
            prev = next((h.change.new_roster for h in c.roster().history if h.change.new_roster.digest() == want), None)
        except MpcError as e:  # shown without the diff; an approval checks the roster again
            view.err(f"roster: {e.message}")
        rows.append(("roster version", new.version))
        rows += [("change", line) for line in (describe_roster_change(prev, new) if prev is not None else ["(previous roster unknown)"])]
    elif p.kind in recovery.RECOVERY_KINDS:  # issue 12: what is restored or exported, to whom, why
        rows += recovery.describe(signed)  # type: ignore[arg-type]
    else:
        op = signed.operation  # type: ignore[union-attr]
        rows += [
            ("operation", op.kind.name.lower()), ("key", op.key_id.hex()), ("epoch", f"{op.old_epoch} -> {op.new_epoch}"),
            ("committee", f"{op.old_threshold}-of-{list(op.old_committee)} -> {op.new_threshold}-of-{list(op.new_committee)}"),
            ("roster version", op.roster_version), ("reason", op.reason or "-"),
        ]
    rows.append(("signed by", ", ".join(d["signed_by"]) + f" ({len(d['signed_by'])} of {p.admin_quorum} needed)"))
    if not d["signatures_verified"]:
        rows.append(("UNVERIFIED", ", ".join(d["unverified_signers"]) or "-"))
    elif d["unverified_signers"]:
        rows.append(("UNVERIFIED", f"{', '.join(d['unverified_signers'])} (signature does not verify or not an admin; not counted)"))
    if p.operations:
        rows.append(("operations", ", ".join(p.operations)))
    if p.error:
        rows.append(("error", p.error))
    note = _Staleness(c).note(p)
    if note:
        rows.append(("STALE", note.removeprefix("STALE: ")))
    return rows


def _retrying(op_id: str, timeout: float | None) -> Callable[[str], None]:
    """What a wait says on stderr when the coordinator stops answering (once per outage)."""
    until = "until the operation ends" if timeout is None else "until it ends or --timeout passes"

    def say(why: str) -> None:
        view.err(f"mpc: key operation {op_id}: the wait is interrupted ({why[:200]}); retrying {until} (Ctrl-C to stop)")

    return say


def _finish(ctx: click.Context, c: MpcClient, p: LifecycleProposalView, *, no_wait: bool) -> int:
    """Show the proposal; if pending, say who must approve; if applied and waiting, wait for its
    key operations (exit 1 if one failed)."""
    opts = _opts(ctx)
    doc: dict[str, Any] = {"proposal": p.as_dict()}
    if p.state == "pending":
        cluster = f" --cluster {quote(opts.cluster)}" if opts.cluster else ""
        view.err(
            f"proposal {p.proposal_id} needs {p.admin_quorum} admin signatures: another admin runs "
            f"'mpc{cluster} --as ADMIN lifecycle approve {p.proposal_id} --expect-digest {p.digest.hex()}'"
        )
    ops: list[KeyOperationView] = []
    if p.state == "applied" and p.kind == "recovery-order":  # its follow-up runs once the officers gave their pieces
        order = p.signed.order  # type: ignore[union-attr]
        view.err(f"the ceremony is open: each officer runs 'mpc recovery contribute --ceremony {order.order_id.hex()} "
                 f"--recovery-key FILE'; 'mpc recovery status {order.order_id.hex()}' follows it")
    elif p.state == "applied" and not no_wait:
        for op_id in p.operations:
            view.err(f"waiting for key operation {op_id}...")
            ops.append(c.wait_key_operation(op_id, opts.timeout, on_change=lambda v: view.err(f"  {v.operation_id}: {v.state}"),
                                            on_retry=_retrying(op_id, opts.timeout)))
        doc["operations"] = [v.as_dict() for v in ops]
    rows = _proposal_rows(c, p) if not opts.json else []
    for v in ops:
        epochs = f"epoch {v.operation.old_epoch} -> {v.operation.new_epoch}"
        err = f"  {v.error}" if v.error else ""
        rows.append(("operation", f"{v.operation_id}  {v.state.upper()} ({epochs}){err}{retry_hint(v.as_dict())}"))
    _show(ctx, doc, rows)
    return Exit.FAILED if any(v.state == "failed" for v in ops) else Exit.OK


# --- key ---------------------------------------------------------------------------------------


@_command(key_group, "refresh", "propose a refresh of a key (new shares, same public key and committee); role admin")
@click.argument("key_id", type=KEY_ID, metavar="KEY")
@REASON
@NO_WAIT
def cmd_key_refresh(ctx: click.Context, key_id: bytes, reason: str, no_wait: bool) -> int:
    with _client(_opts(ctx)) as c:
        _need_signer(c)
        _need_cluster_file(c, admin_set=True)
        return _finish(ctx, c, c.refresh_key(key_id, reason), no_wait=no_wait)


@_command(key_group, "reshare", "propose resharing a key to a new committee and/or threshold; role admin")
@click.argument("key_id", type=KEY_ID, metavar="KEY")
@click.option("--threshold", type=UInt(2, MAX_INDEX), required=True, help="the new threshold")
@click.option("--nodes", type=IndexList(), required=True, help="the new committee: roster indices, e.g. 1,2,4,5")
@REASON
@NO_WAIT
def cmd_key_reshare(ctx: click.Context, key_id: bytes, threshold: int, nodes: tuple[int, ...], reason: str, no_wait: bool) -> int:
    with _client(_opts(ctx)) as c:
        _need_signer(c)
        _need_cluster_file(c, admin_set=True)
        return _finish(ctx, c, c.reshare_key(key_id, threshold, nodes, reason), no_wait=no_wait)


@_command(key_group, "operations", "key operations (refresh, reshare) of a key, or of every key")
@click.argument("key_id", type=KEY_ID, metavar="[KEY]", required=False)
def cmd_key_operations(ctx: click.Context, key_id: bytes | None) -> int:
    with _client(_opts(ctx)) as c:
        ops = c.key_operations(key_id)
    if _opts(ctx).json:
        view.out(json.dumps([v.as_dict() for v in ops], indent=2))
        return Exit.OK
    if not ops:
        view.out("no key operations")
    for v in ops:
        view.out(_operation_line(v))
    return Exit.OK


# --- node --------------------------------------------------------------------------------------


def read_enrolment(path: Path, *, replacement: bool = False) -> RosterEntry:
    """A node's enrolment file: JSON ``{"index", "name", "identity_key", "encryption_key",
    "tls_fingerprint", "endpoint"}`` (keys and fingerprint in hex; ``status``/``key_version``
    may be given as ``active``/1). CliUsage naming the field otherwise. ``replacement``: the
    enrolment of a replacement host (``mpc node replace``): any ``key_version`` (its keys, not
    its version, are used)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CliUsage(f"--enrolment: cannot read {quote(str(path))}: {e.strerror or type(e).__name__}") from None
    if len(data) > MAX_ENROLMENT_BYTES:
        raise CliUsage(f"--enrolment: more than {MAX_ENROLMENT_BYTES} bytes")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CliUsage(f"--enrolment: {quote(str(path))} is not JSON") from None
    if not isinstance(doc, dict):
        raise CliUsage("--enrolment: must be a JSON object")
    doc = {"status": "active", "key_version": 1, **doc}
    try:
        entry = RosterEntry.from_dict(doc)
    except GovernanceError as e:
        raise CliUsage(f"--enrolment: {e.field}: {e.reason}") from None
    if not entry.active or (entry.key_version != 1 and not replacement):
        raise CliUsage("--enrolment: a node is enrolled active with key_version 1")
    return entry


@_command(node_group, "add", "propose enrolling a node (its enrolment request and certificate, or a roster entry); role admin")
@click.option(
    "--enrolment", type=PathArg("FILE"), required=True,
    help="the node's enrolment-request.json (with --cert), or JSON: index, name, identity_key, encryption_key, tls_fingerprint, endpoint",
)
@click.option("--cert", type=PathArg("FILE"), default=None, help="with an enrolment request: its CA-issued certificate (PEM)")
@click.option("--index", type=UInt(1, MAX_INDEX), default=None,
              help="with an enrolment request: the roster index (default: the largest ever enrolled + 1)")
@NO_WAIT
def cmd_node_add(ctx: click.Context, enrolment: Path, cert: Path | None, index: int | None, no_wait: bool) -> int:
    from mpcnet.client import cli_nodeadd

    with _client(_opts(ctx)) as c:
        _need_signer(c)
        _need_cluster_file(c, admin_set=True)
        entry = cli_nodeadd.entry_for(_opts(ctx), c, enrolment, cert, index, read_enrolment)
        return _finish(ctx, c, c.add_node(entry), no_wait=no_wait)


@_command(node_group, "remove", "propose revoking a node (every key is reshared without it); role admin")
@click.argument("index", type=UInt(1, MAX_INDEX), metavar="N")
@NO_WAIT
def cmd_node_remove(ctx: click.Context, index: int, no_wait: bool) -> int:
    with _client(_opts(ctx)) as c:
        _need_signer(c)
        _need_cluster_file(c, admin_set=True)
        return _finish(ctx, c, c.remove_node(index), no_wait=no_wait)


@_command(node_group, "rotate-keys", "rotate a node's identity, encryption and TLS keys (CA signs its new certificate); role admin")
@click.argument("index", type=UInt(1, MAX_INDEX), metavar="N")
@click.option("--ca-cert", type=InFile(), default=None, help="CA certificate (PEM); default: the cluster directory's ca/ca.pem")
@click.option("--ca-key", type=InFile(), default=None, help="CA private key (PEM); default: the cluster directory's ca/ca.key")
@click.option("--csr-out", type=PathArg("FILE"), default=None,
              help="external CA, step 1: stage the rotation, write the node's CSR to FILE (and FILE.staged.json), change nothing else")
@click.option("--cert", type=InFile(), default=None,
              help="external CA, step 2: the certificate the CA issued for the CSR of --csr (installed, then the roster change proposed)")
@click.option("--csr", type=InFile(), default=None, help="with --cert: the CSR file step 1 wrote (FILE.staged.json next to it)")
@NO_WAIT
def cmd_node_rotate_keys(
    ctx: click.Context, index: int, ca_cert: Path | None, ca_key: Path | None, csr_out: Path | None, cert: Path | None,
    csr: Path | None, no_wait: bool,
) -> int:
    opts = _opts(ctx)
    external = csr_out is not None or cert is not None or csr is not None
    if external:
        from mpcnet.client import cli_rotate

        if ca_cert is not None or ca_key is not None:
            raise CliUsage("--ca-cert/--ca-key sign here; --csr-out, --cert and --csr are for an external CA: give one way")
        if (csr_out is None) == (cert is None) or (cert is None) != (csr is None):
            raise CliUsage("give --csr-out FILE (step 1), or --cert FILE with --csr FILE (step 2)")
        with _client(opts) as c:
            _need_signer(c)
            _need_cluster_file(c, admin_set=True)
            if csr_out is not None:
                staged = c.stage_key_rotation(index)
                entry = c.roster().roster.entry(index)
                cli_rotate.check_staged_csr(staged, entry.endpoint if entry is not None else "")
                record = cli_rotate.write_staged(csr_out, staged)
                _show(ctx, {"node": index, "csr": str(csr_out), "staged": str(record)},
                      [("node", index), ("csr", str(csr_out)), ("staged", str(record))])
                view.err(cli_rotate.next_step(index, csr_out))
                return Exit.OK
            assert cert is not None and csr is not None
            staged = cli_rotate.read_staged(csr, index)
            entry = c.roster().roster.entry(index)
            if entry is None or not entry.active:
                raise CliUsage(f"N: node {index} is not an active node of the roster in force")
            cert_pem = cli_rotate.check_external_certificate(opts, cert, staged, entry.endpoint)
            return _finish(ctx, c, c.finish_key_rotation(staged, cert_pem), no_wait=no_wait)
    if (ca_cert is None) != (ca_key is None):
        raise CliUsage("give both --ca-cert and --ca-key, or neither (the cluster directory's dev CA)")
    if ca_cert is None or ca_key is None:
        if not opts.cluster:
            raise CliUsage("give --ca-cert FILE --ca-key FILE (or --cluster DIR for its dev CA; --csr-out FILE for an external CA)")
        ca_cert, ca_key = Path(opts.cluster) / "ca" / "ca.pem", Path(opts.cluster) / "ca" / "ca.key"
        if not ca_cert.is_file() or not ca_key.is_file():
            raise CliUsage(f"--cluster: {quote(opts.cluster)} has no dev CA (ca/ca.pem, ca/ca.key): give --ca-cert and --ca-key")
    with _client(opts) as c:
        _need_signer(c)
        _need_cluster_file(c, admin_set=True)
        return _finish(ctx, c, c.rotate_node_keys(index, CertPaths(ca_cert, ca_key)), no_wait=no_wait)


# --- roster ------------------------------------------------------------------------------------


@_command(roster_group, "show", "the roster in force (verified against your admin set)")
@click.option("--history", is_flag=True,
              help="print the whole verified chain as the JSON list a node's config takes as governance.roster_history")
def cmd_roster_show(ctx: click.Context, history: bool) -> int:
    with _client(_opts(ctx)) as c:
        _need_cluster_file(c, admin_set=True)
        r = c.roster()
    if history:  # verified against this client's admin set by roster(): safe to hand to a new node
        view.out(json.dumps([h.to_dict() for h in r.history], indent=2))
        return Exit.OK
    d = r.as_dict()
    rows: list[view.Row] = [("version", r.version), ("epoch", r.roster.epoch), ("digest", d["digest"]),
                            ("active", list(r.active())), ("revoked", list(r.revoked()) or "-")]
    for e in r.roster.entries:
        state = "active" if e.active else "REVOKED"
        rows.append((f"node {e.index}", f"{e.name}  {e.endpoint}  {state}  key version {e.key_version}  "
                                        f"identity {e.identity_key.hex()[:16]}  tls {e.tls_fingerprint.hex()[:16]}"))
    _show(ctx, d, rows)
    return Exit.OK


@_command(roster_group, "push", "install the verified roster history on every node directly (as 'policy push'); role admin")
def cmd_roster_push(ctx: click.Context) -> int:
    with _client(_opts(ctx)) as c:
        _need_cluster_file(c, admin_set=True, nodes=True)
        cli_mod._follow_roster(ctx, c)
        outcomes = c.push_roster()
    _show(ctx, outcomes, [(name, str(v)[:500]) for name, v in sorted(outcomes.items())])
    return Exit.FAILED if any(v.startswith(("error", "forked")) for v in outcomes.values()) else Exit.OK


# --- lifecycle proposals -------------------------------------------------------------------------


@_command(lifecycle_group, "list", "roster change and key operation proposals")
@click.option("--state", type=Choice(PROPOSAL_STATES), default=None)
def cmd_lifecycle_list(ctx: click.Context, state: str | None) -> int:
    with _client(_opts(ctx)) as c:
        ps = c.list_lifecycle_proposals(state)
        if _opts(ctx).json:
            view.out(json.dumps([p.as_dict() for p in ps], indent=2))
            return Exit.OK
        stale = _Staleness(c)
        notes = [stale.note(p) for p in ps]
    if not ps:
        view.out("no proposals")
    for p, note in zip(ps, notes, strict=True):
        d = p.as_dict()
        what = (f"roster v{d['roster']['version']}" if p.kind == "roster"
                else recovery.summary(p.signed) if p.kind in recovery.RECOVERY_KINDS  # type: ignore[arg-type]
                else f"{d['operation']['kind']} key {d['operation']['key_id'][:16]}")
        odd = f"  UNVERIFIED: {', '.join(d['unverified_signers'])}" if d["unverified_signers"] else ""
        note = f"  {note}" if note else ""
        view.out(escape(f"{p.proposal_id}  {p.state.upper():<10} {what}  signed by {', '.join(d['signed_by']) or '-'}{odd}{note}"))
    return Exit.OK


class _Staleness:
    """Whether a pending proposal can still be applied: a key operation starts from the key's
    current epoch, a roster change extends the roster in force. A stale one stays PENDING
    (nothing supersedes it) but approving it is refused; the list says so."""

    def __init__(self, c: MpcClient) -> None:
        self.c = c
        self.epochs: dict[bytes, int | None] = {}
        self.roster: tuple[int, bytes] | None = None

    def note(self, p: LifecycleProposalView) -> str:
        """'' or ``STALE: why; approving it is refused``; '' when it cannot be told."""
        if p.state != "pending":
            return ""
        try:
            if p.kind == "roster":
                if self.roster is None:
                    r = self.c.roster().roster
                    self.roster = (r.version, r.digest())
                if p.signed.change.previous_digest != self.roster[1]:  # type: ignore[union-attr]
                    return f"STALE: the roster is at version {self.roster[0]} now; approving it is refused"
                return ""
            if p.kind == "recovery-config":
                return ""
            op = p.signed.order if p.kind == "recovery-order" else p.signed.operation  # type: ignore[union-attr]
            if op.key_id not in self.epochs:
                self.epochs[op.key_id] = self.c.get_key(op.key_id).epoch
            now = self.epochs[op.key_id]
            start = op.epoch if p.kind == "recovery-order" else op.old_epoch  # type: ignore[union-attr]
            if now is not None and now != start:
                what = "order" if p.kind == "recovery-order" else "operation"
                return f"STALE: the key is at epoch {now}, this {what} starts from epoch {start}; approving it is refused"
        except MpcError:
            return ""
        return ""


@_command(lifecycle_group, "show", "one proposal")
@click.argument("proposal_id", type=Identifier("request"), metavar="ID")
def cmd_lifecycle_show(ctx: click.Context, proposal_id: str) -> int:
    with _client(_opts(ctx)) as c:
        p = c.get_lifecycle_proposal(proposal_id)
        rows = [] if _opts(ctx).json else _proposal_rows(c, p)
    _show(ctx, {"proposal": p.as_dict()}, rows)
    return Exit.OK


@_command(lifecycle_group, "approve", "sign a pending roster change or key operation (checked first); role admin")
@click.argument("proposal_id", type=Identifier("request"), metavar="ID")
@click.option("--expect-digest", type=Hex(32), default=None, help="refuse unless the proposal's digest is this one (as 'show' prints it)")
@NO_WAIT
def cmd_lifecycle_approve(ctx: click.Context, proposal_id: str, expect_digest: bytes | None, no_wait: bool) -> int:
    with _client(_opts(ctx)) as c:
        _need_signer(c)
        _need_cluster_file(c, admin_set=True)
        return _finish(ctx, c, c.approve_lifecycle(proposal_id, expect_digest=expect_digest), no_wait=no_wait)


# --- mpc status ----------------------------------------------------------------------------------


def status_doc(st: Any) -> dict[str, Any]:
    """What ``mpc status --json`` adds: ``roster_version``, ``roster_epoch``, ``revoked`` (roster
    indices) and ``operations`` (key operations not yet done, as ``KeyOperationStatus`` fields;
    each checked against its signed operation when it carries one)."""
    return {
        "roster_version": st.roster_version, "roster_epoch": st.roster_epoch,
        "revoked": [n.index for n in st.nodes if n.revoked], "operations": [_status_op(o) for o in st.operations],
    }


def retry_hint(d: dict[str, Any]) -> str:
    """For a failed operation (``KeyOperationView.as_dict()``): what the key is left with and the
    command that tries again (a new proposal; the failed one stays failed). Else ''."""
    if d.get("state") != "failed" or "key_id" not in d:
        return ""
    key = d["key_id"]
    again = (f"mpc key refresh {key}" if d.get("kind") == "refresh" else
             f"mpc key reshare {key} --threshold {d['new_threshold']} --nodes {','.join(map(str, d['new_committee']))}")
    return f"  (the key stays at epoch {d['old_epoch']} and signs; to try again, an admin proposes it anew: '{again}')"


def _status_op(o: Any) -> dict[str, Any]:
    try:
        return KeyOperationView.from_proto(o).as_dict()
    except MpcError as e:
        return {"operation_id": o.operation_id, "state": o.state, "error": f"unverified: {e.message}"}


def status_rows(st: Any) -> list[view.Row]:
    """``roster`` (version, epoch; "not reported" by a coordinator with a fixed roster or without
    issue 11) and ``revoked`` rows of ``mpc status``."""
    revoked = [n.index for n in st.nodes if n.revoked]
    roster = f"version {st.roster_version}, epoch {st.roster_epoch}" if st.roster_version else "not reported ('mpc roster show')"
    rows: list[view.Row] = [("roster", roster)]
    if revoked:
        rows.append(("revoked", revoked))
    return rows


def operation_rows(st: Any) -> list[view.Row]:
    """One ``key operation`` row per operation not yet done."""
    out: list[view.Row] = []
    for o in st.operations:
        d = _status_op(o)
        text = (f"{d.get('kind', '?')} key {str(d.get('key_id', ''))[:16]} {d['state'].upper()} epoch {d.get('old_epoch', '?')}->"
                f"{d.get('new_epoch', '?')}" + (f"  waiting for nodes {d['pending_nodes']}" if d.get("pending_nodes") else "")
                + (f"  {d['error']}" if d.get("error") else ""))
        out.append(("operation", f"{o.operation_id}  {text}{retry_hint(d)}"))
    return out
