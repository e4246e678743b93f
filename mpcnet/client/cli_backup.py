"""'mpc' commands of backup, recovery and drills (issue 12).

\b
    mpc officer keygen --out FILE                       (off-line: an age identity, 0600)
    mpc --as admin1 recovery officers set --officer NAME=age1... [...] --quorum M --export-quorum E [--drill-days N]
    mpc --as NAME   recovery officers show
    mpc --as NAME   backup list [--key K] | backup export --key K --out FILE
    mpc --cluster DIR backup verify --bundle FILE [--recovery-key FILE]   (off-line; admin set from cluster.json)
    mpc --cluster DIR backup piece --bundle FILE --share I --officer NAME --out FILE   (one age file; 'age -d' opens it)
    mpc --as NAME   backup drill --key K --recovery-key FILE [--recovery-key FILE ...]
    mpc --as admin1 recovery restore --key K --nodes 3,4,5 [--reshare-threshold T --reshare-nodes N,..] --reason TEXT [--valid-for S]
    mpc --as officer1 recovery contribute --ceremony ID --recovery-key FILE
    mpc --as NAME   recovery status [ID]
    mpc --as admin1 recovery export-order --key K --recipient age1... --reason TEXT [--valid-for S]
    mpc --as NAME   recovery export-key --ceremony ID --identity FILE --out FILE
    mpc --as NAME   recovery pieces --ceremony ID --out FILE          (an export's pieces + order, for the off-line machine)
    mpc --cluster DIR recovery export-key --bundle FILE --pieces FILE [--order FILE] --identity FILE --out FILE   (off-line)
    mpc --as admin1 node replace N --enrolment FILE

Proposals (officers, orders, node replacement) are approved with 'mpc lifecycle approve ID
--expect-digest HEX' by other admins (a break-glass export needs the export quorum). An officer's
pieces never leave her machine in the clear: 'contribute' verifies the order, the bundle and the
target's key first, then re-encrypts each piece to its target.

Added to the ``mpc`` group by :func:`register` (called by :mod:`mpcnet.client.cli`).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from governance.errors import GovernanceError
from governance.keyop import MAX_REASON_CHARS
from governance.policy import AdminSet
from governance.recovery import BackupBundle, RecoveryOrder, SignedRecoveryOrder
from governance.roster import MAX_INDEX, SignedRosterChange
from governance.text import NAME_RE, escape, quote
from mpcnet.client import cli as cli_mod, cli_render as view
from mpcnet.client.backup import (
    MAX_ORDER_VALID_FOR_S,
    MAX_PIECES_FILE,
    ORDER_VALID_FOR_S,
    CeremonyView,
    check_bundle,
    check_officer_pieces,
    offline_export_key,
    plain,
    read_pieces_document,
    x25519_public,
)
from mpcnet.client.cli import (
    KEY_ID,
    CliUsage,
    _cluster_info,
    _command,
    _group,
    _need_cluster_file,
    _need_signer,
    _opts,
    _show,
)
from mpcnet.client.cli_args import Exit
from mpcnet.client.cli_lifecycle import NO_WAIT, _finish, _new_group, node_group, read_enrolment
from mpcnet.client.errors import MpcError
from mpcnet.client.lifecycle import KeyOperationView
from mpcnet.client.sdk import MpcClient
from mpcnet.common import agekeys
from mpcnet.common.cliutil import Hex, IndexList, InFile, PathArg, Text, UInt
from mpcnet.common.fsutil import write_atomic

MAX_OFFICERS = 64
MAX_DRILL_DAYS = 10 * 365
MAX_BUNDLE_FILE = 16 * 1024 * 1024
CEREMONY_ID = Hex(16)
_OFFICER_RE = re.compile(rf"({NAME_RE.pattern})=(age1[0-9a-z]{{1,200}})")

officer_group = _new_group("officer", "recovery officers: keygen (an age key pair, made off-line)")
backup_group = _new_group("backup", "backup bundles: list, export, verify, piece, drill")
recovery_group = _new_group("recovery", "recovery officers, restore and break-glass export ceremonies")
officers_group = _group(recovery_group, "officers", "the recovery officers' configuration: set, show")


def register(root: click.Group) -> None:
    """Add the ``officer``, ``backup`` and ``recovery`` groups to ``root`` (the ``mpc`` group)."""
    for g in (officer_group, backup_group, recovery_group):
        root.add_command(g)


register(cli_mod.cli)

RECOVERY_KEY = click.option("--recovery-key", type=InFile(), required=True, help="your age identity file (mpc officer keygen)")
VALID_FOR = click.option(
    "--valid-for", "valid_for", type=UInt(60, MAX_ORDER_VALID_FOR_S), default=ORDER_VALID_FOR_S, show_default=True,
    help="seconds the order stays valid (approvals, the officers' pieces and the restore must all happen before it expires)",
)
REASON = click.option("--reason", type=Text(MAX_REASON_CHARS), required=True, help=f"why (one line, at most {MAX_REASON_CHARS} characters)")


def _client(opts: Any) -> MpcClient:
    c: MpcClient = cli_mod._client(None, opts)
    return c


def _when(ms: int) -> str:
    if not ms:
        return "never"
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _read_identity(path: Path, option: str) -> bytes:
    """An age identity file (never echoed): CliUsage naming the option and the file."""
    try:
        return agekeys.read_identity_file(path)
    except (agekeys.AgeKeyError, OSError, ValueError) as e:  # names the file, never the key
        raise CliUsage(f"{option}: {escape(str(e))[:300]}") from None


def _write_secret(path: Path, data: bytes, option: str, *, overwrite: bool) -> None:
    try:
        write_atomic(path, data, mode=0o600, overwrite=overwrite)
    except FileExistsError:
        raise CliUsage(f"{option}: {quote(str(path))} exists (not overwritten)") from None
    except OSError as e:
        raise CliUsage(f"{option}: cannot write {quote(str(path))}: {e.strerror or type(e).__name__}") from None


# --- officer -----------------------------------------------------------------------------------


@_command(officer_group, "keygen", "make an officer's age key pair (identity file 0600, never overwritten); prints the recipient")
@click.option("--out", type=PathArg("FILE"), required=True, help="the identity file to create (like age-keygen -o)")
def cmd_officer_keygen(ctx: click.Context, out: Path) -> int:
    private, public = agekeys.generate()
    try:
        agekeys.write_identity_file(out, private)
    except FileExistsError:
        raise CliUsage(f"--out: {quote(str(out))} exists (an identity is never overwritten)") from None
    except (agekeys.AgeKeyError, OSError) as e:
        raise CliUsage(f"--out: cannot write {quote(str(out))}: {escape(getattr(e, 'strerror', None) or str(e))[:300]}") from None
    recipient = agekeys.recipient_text(public)
    view.err(f"wrote {out} (keep it off-line; give the recipient below to the admins)")
    _show(ctx, {"recipient": recipient, "file": str(out)}, [("recipient", recipient)])
    return Exit.OK


# --- recovery officers ---------------------------------------------------------------------------


def parse_officers(values: Sequence[str]) -> list[tuple[str, bytes]]:
    """``NAME=age1...`` options in order (officer index = position): CliUsage naming the bad one."""
    if not values:
        raise CliUsage("--officer: give at least two officers, NAME=age1...")
    if len(values) > MAX_OFFICERS:
        raise CliUsage(f"--officer: at most {MAX_OFFICERS} officers")
    out: list[tuple[str, bytes]] = []
    for i, v in enumerate(values, 1):
        m = _OFFICER_RE.fullmatch(v)
        if m is None:
            raise CliUsage(f"--officer[{i}]: must be NAME=age1... (NAME: 1-64 of [A-Za-z0-9._-]), got {quote(v)}")
        try:
            out.append((m.group(1), agekeys.parse_recipient(m.group(2))))
        except (agekeys.AgeKeyError, ValueError) as e:
            raise CliUsage(f"--officer[{i}]: {quote(m.group(1))}: not an age recipient ({escape(str(e))[:200]})") from None
    return out


@_command(officers_group, "set", "propose the recovery officers (age recipients), quorum m and export quorum; role admin")
@click.option("--officer", "officers", multiple=True, metavar="NAME=age1...", help="an officer (repeat; the order is the officer index)")
@click.option("--quorum", type=UInt(2, MAX_OFFICERS), required=True, help="officers needed to recover a share (m)")
@click.option("--export-quorum", type=UInt(1, 255), required=True,
              help="admin signatures a break-glass export needs (more than the admin quorum)")
@click.option("--drill-days", type=UInt(0, MAX_DRILL_DAYS), default=0, help="a drill is due every N days (0: not required)")
def cmd_officers_set(ctx: click.Context, officers: tuple[str, ...], quorum: int, export_quorum: int, drill_days: int) -> int:
    with _client(_opts(ctx)) as c:
        parsed = parse_officers(officers)
        _need_signer(c)
        _need_cluster_file(c, admin_set=True)
        change = c.build_recovery_config(parsed, quorum=quorum, export_quorum=export_quorum, drill_period_s=drill_days * 86400)
        return _finish(ctx, c, c.propose_recovery_config(change), no_wait=True)


@_command(officers_group, "show", "the recovery configuration in force (verified against your admin set)")
def cmd_officers_show(ctx: click.Context) -> int:
    with _client(_opts(ctx)) as c:
        _need_cluster_file(c, admin_set=True)
        v = c.recovery_config()
    d = v.as_dict()
    if v.config is None:
        _show(ctx, d, [("recovery config", "none: no officers configured ('mpc recovery officers set')")])
        return Exit.OK
    rows: list[view.Row] = [("version", d["version"]), ("quorum", f"{d['quorum']} of {len(d['officers'])} officers"),
                            ("export quorum", f"{d['export_quorum']} admins"),
                            ("drill", f"every {d['drill_period_s'] // 86400} days" if d["drill_period_s"] else "not required")]
    rows += [(f"officer {o['index']}", f"{o['name']}  {o['recipient']}") for o in d["officers"]]
    rows.append(("digest", d["digest"]))
    _show(ctx, d, rows)
    return Exit.OK


# --- backups -------------------------------------------------------------------------------------


@_command(backup_group, "list", "a key's bundles (or every key's), newest first")
@click.option("--key", "key_id", type=KEY_ID, default=None, help="key id (hex)")
def cmd_backup_list(ctx: click.Context, key_id: bytes | None) -> int:
    with _client(_opts(ctx)) as c:
        bs = c.list_backups(key_id)
    if _opts(ctx).json:
        view.out(json.dumps([b.as_dict() for b in bs], indent=2))
        return Exit.OK
    if not bs:
        view.out("no backups")
    for b in bs:
        state = "SUPERSEDED" if b.superseded else "current"
        view.out(escape(f"{b.bundle_digest.hex()}  key {b.key_id.hex()[:16]}  epoch {b.epoch}  config v{b.config_version}  "
                        f"{state:<10}  {b.size_bytes} bytes  {_when(b.created_unix_ms)}"))
    return Exit.OK


@_command(backup_group, "export", "write a key's bundle to a file (verified first; mode 0600, atomic)")
@click.option("--key", "key_id", type=KEY_ID, required=True, help="key id (hex)")
@click.option("--out", type=PathArg("FILE"), required=True, help="the bundle file to write")
@click.option("--bundle-digest", type=Hex(32), default=None, help="this bundle (the digest 'backup list' shows) instead of the newest")
def cmd_backup_export(ctx: click.Context, key_id: bytes, out: Path, bundle_digest: bytes | None) -> int:
    with _client(_opts(ctx)) as c:
        _need_cluster_file(c, admin_set=True)
        info, data, _bundle, summary = c.export_backup(key_id, bundle_digest)
    _write_secret(out, data, "--out", overwrite=True)
    d = {**info.as_dict(), "file": str(out), "verified": plain(summary)}
    _show(ctx, d, [("bundle", info.bundle_digest.hex()), ("key", info.key_id.hex()), ("epoch", info.epoch),
                   ("recovery config", f"version {info.config_version}"), ("verified", "yes (signatures, commitments, public shares)"),
                   ("written", f"{out} ({info.size_bytes} bytes)")])
    return Exit.OK


def _admin_set_offline(opts: Any) -> AdminSet:
    info = _cluster_info(opts)
    try:
        return AdminSet.from_dict(info["admin_set"])
    except KeyError:
        raise CliUsage("--cluster: cluster.json has no admin_set") from None
    except GovernanceError as e:
        raise CliUsage(f"--cluster: cluster.json admin_set.{e.field}: {e.reason}") from None


@_command(backup_group, "verify", "verify a bundle file off-line (no coordinator); with --recovery-key, your own pieces too")
@click.option("--bundle", type=InFile(), required=True, help="the bundle file ('backup export')")
@click.option("--recovery-key", type=InFile(), default=None, help="your age identity file: decrypt and check your pieces")
def cmd_backup_verify(ctx: click.Context, bundle: Path, recovery_key: Path | None) -> int:
    admins = _admin_set_offline(_opts(ctx))
    data = _read_bundle_file(bundle)

    b, config, summary = check_bundle(data, admins)
    doc: dict[str, Any] = {"bundle_digest": hashlib.sha256(data).hexdigest(), "key_id": b.key.key_id.hex(), "epoch": b.key.epoch,
                           "recovery_config_version": config.version, "verified": plain(summary)}
    rows: list[view.Row] = [("bundle", doc["bundle_digest"]), ("key", doc["key_id"]), ("epoch", b.key.epoch),
                            ("shares", f"{b.key.threshold}-of-{len(b.key.committee)} on nodes {list(b.key.committee)}"),
                            ("officers", f"{config.quorum}-of-{len(config.officers)} (config version {config.version})"),
                            ("public check", "OK: signatures, roster, commitments, public shares, complete")]
    failed = False
    if recovery_key is not None:
        priv = _read_identity(recovery_key, "--recovery-key")
        who = config.officer_by_recipient(x25519_public(priv))
        if who is None:
            raise CliUsage(f"--recovery-key: not the key of an officer of this bundle (config version {config.version})")
        report = check_officer_pieces(b, priv)
        failed = not report.ok
        doc["officer"] = {"index": who, "name": config.officers[who - 1].name, "report": plain(report), "ok": not failed}
        verdict = "FAILED" if failed else "OK: every piece decrypts and matches"
        rows.append(("officer", f"{who} ({config.officers[who - 1].name}): {verdict}"))
        rows += [(f"  share {p.share_index} (node {p.node})", p.outcome + (f": {p.reason}" if p.reason else ""))
                 for p in report.pieces if p.outcome != "ok"]
    _show(ctx, doc, rows)
    return Exit.FAILED if failed else Exit.OK


def _read_bundle_file(bundle: Path) -> bytes:
    try:
        data = bundle.read_bytes() if bundle.stat().st_size <= MAX_BUNDLE_FILE else b""
    except OSError as e:
        raise CliUsage(f"--bundle: cannot read {quote(str(bundle))}: {e.strerror or type(e).__name__}") from None
    if not data:
        raise CliUsage(f"--bundle: {quote(str(bundle))} is empty or more than {MAX_BUNDLE_FILE} bytes")
    return data


@_command(backup_group, "piece", "write one officer's piece of one share from a bundle as a standard age file (for 'age -d')")
@click.option("--bundle", type=InFile(), required=True, help="the bundle file ('backup export'); verified publicly first")
@click.option("--share", "share_index", type=UInt(1, MAX_INDEX), required=True, help="the share index (1-based, the node's position)")
@click.option("--officer", required=True, metavar="NAME|INDEX", help="the officer, by name or 1-based index ('recovery officers show')")
@click.option("--out", type=PathArg("FILE"), required=True, help="the age file to create (never overwritten)")
def cmd_backup_piece(ctx: click.Context, bundle: Path, share_index: int, officer: str, out: Path) -> int:
    """Copy one encrypted piece out of a verified bundle. Nothing is decrypted: the file is the
    age ciphertext the node wrote for that officer; ``age -d -i OFFICER.agekey FILE`` opens it
    with the officer's identity file, independently of this program (the plaintext is the binary
    BackupPiece encoding of spec/governance-v1.md 5.26: key id, epoch, share, officer, configuration
    version and the 32-byte piece)."""
    admins = _admin_set_offline(_opts(ctx))
    data = _read_bundle_file(bundle)
    b, config, _summary = check_bundle(data, admins)
    if officer.isdigit():
        j = int(officer)
        if not 1 <= j <= len(config.officers):
            raise CliUsage(f"--officer: {j} is not an officer index of this bundle (1..{len(config.officers)})")
    else:
        try:
            j = config.officer_index(officer)
        except GovernanceError as e:
            raise CliUsage(f"--officer: {escape(e.reason)[:200]}") from None
    parts = [p for p in b.parts if p.part.share_index == share_index]
    if not parts:
        raise CliUsage(f"--share: {share_index} is not a share of this bundle (1..{len(b.parts)})")
    part = parts[0].part
    try:
        write_atomic(out, part.pieces[j - 1], mode=0o644, overwrite=False)
    except FileExistsError:
        raise CliUsage(f"--out: {quote(str(out))} exists (not overwritten)") from None
    except OSError as e:
        raise CliUsage(f"--out: cannot write {quote(str(out))}: {e.strerror or type(e).__name__}") from None
    name = config.officers[j - 1].name
    d = {"bundle_digest": hashlib.sha256(data).hexdigest(), "share_index": share_index, "node": part.node,
         "officer": {"index": j, "name": name}, "file": str(out), "size_bytes": len(part.pieces[j - 1])}
    _show(ctx, d, [("bundle", d["bundle_digest"]), ("share", f"{share_index} (node {part.node})"), ("officer", f"{j} ({name})"),
                   ("written", f"{out} ({d['size_bytes']} bytes, age)"),
                   ("next", f"age -d -i IDENTITY_FILE -o piece.bin {out}   ({name}'s 'mpc officer keygen' file)")])
    return Exit.OK


# --- ceremonies ----------------------------------------------------------------------------------


def follow_up_text(op: KeyOperationView | None) -> str:
    """A restore's follow-up operation in one line (``None``: not visible to this identity)."""
    if op is None:
        return "(its state: 'mpc key operations KEY' as an admin or auditor)"
    o = op.operation
    line = f"{o.kind.name.lower()} epoch {o.old_epoch} -> {o.new_epoch}: {op.state.upper()}"
    return line + (f"  {op.error}" if op.error else "")


def ceremony_rows(c: CeremonyView, follow_up: KeyOperationView | None = None) -> list[view.Row]:
    """A ceremony per node (target) and per officer; caller text (reason) last."""
    rows: list[view.Row] = [("ceremony", c.ceremony_id.hex()), ("kind", c.kind.upper() if c.kind == "export" else c.kind),
                            ("state", c.state.upper()), ("key", c.key_id.hex()), ("epoch", c.epoch),
                            ("bundle", c.bundle_digest.hex()),
                            ("officers", f"{', '.join(c.officers) or '-'} ({len(c.officers)} given, {c.quorum} needed)")]
    if c.started_by:
        rows.append(("started by", c.started_by))
    for t in c.targets:
        where = "the off-line recipient" if t.node == 0 else f"node {t.node}"
        rows.append((f"share {t.share_index}", f"{where}: {t.state.upper()}" + (f"  {t.error}" if t.error else "")))
        rows += [(f"  officer {i}", f"{n}: {o}") for i, n, o in t.outcomes]
    per_officer: dict[str, list[str]] = {}
    for t in c.targets:
        for _i, n, o in t.outcomes:
            per_officer.setdefault(n, []).append(o)
    for n, outs in sorted(per_officer.items()):
        bad = [o for o in outs if o not in ("ok", "missing")]
        if all(o == "missing" for o in outs):
            rows.append((f"officer {n}", "gave no pieces"))
        else:
            refused = f"{len(bad)} of {len(outs)} pieces refused: {', '.join(bad)}"
            rows.append((f"officer {n}", "ok for every share" if not bad else refused))
    if c.follow_up_operation:
        rows.append(("follow-up", f"{c.follow_up_operation}  {follow_up_text(follow_up)}"))
    if c.error:
        rows.append(("error", c.error))
    if c.order is not None:
        rows.append(("reason", f"(the order's text) \"{escape(c.order.order.reason)}\""))
    return rows


def _ceremony_exit(c: CeremonyView) -> int:
    return Exit.FAILED if c.state == "failed" or any(t.state == "failed" for t in c.targets) else Exit.OK


def _officer_client(c: MpcClient, ctx: click.Context, name: str) -> MpcClient:
    """The client acting as officer ``name`` (this one, or DIR/identities/NAME with --cluster)."""
    opts = _opts(ctx)
    if c.identity is not None and c.identity.name == name:
        return c
    if not opts.cluster:
        raise CliUsage(f"--recovery-key: belongs to officer {quote(name)}: give --cluster DIR (identities/{name}) or run as {name}")
    return _client(replace(opts, as_name=name))


@_command(backup_group, "drill", "rehearse a restore of a key's newest bundle on its nodes; each --recovery-key gives its pieces")
@click.option("--key", "key_id", type=KEY_ID, required=True, help="key id (hex)")
@click.option("--recovery-key", "recovery_keys", type=InFile(), multiple=True, required=True,
              help="an officer's age identity file (repeat; with --cluster, each acts as its officer's identity)")
@click.option("--no-wait", is_flag=True, help="return once the pieces are given; do not wait for the nodes' reports "
              "('mpc recovery status ID' shows them)")
def cmd_backup_drill(ctx: click.Context, key_id: bytes, recovery_keys: tuple[Path, ...], no_wait: bool) -> int:
    opts = _opts(ctx)
    with _client(opts) as c:
        keys = [(p, _read_identity(p, "--recovery-key")) for p in recovery_keys]
        _need_cluster_file(c, admin_set=True)
        config = c.recovery_config().config
        if config is None:
            raise CliUsage("--key: no recovery officers are configured ('mpc recovery officers set')")
        names: list[str] = []
        for p, priv in keys:
            who = config.officer_by_recipient(x25519_public(priv))
            if who is None:
                raise CliUsage(f"--recovery-key: {quote(str(p))} is not the key of an officer (config version {config.version})")
            names.append(config.officers[who - 1].name)
        if len(set(names)) != len(names):
            raise CliUsage("--recovery-key: one officer's key is given twice")
        cer = c.start_drill(key_id)
        view.err(f"drill {cer.ceremony_id.hex()} started for key {key_id.hex()}")
        for (_p, priv), name in zip(keys, names, strict=True):
            oc = _officer_client(c, ctx, name)
            try:
                cer = oc.contribute(cer.ceremony_id, priv)
            finally:
                if oc is not c:
                    oc.close()
            view.err(f"  officer {name}: pieces given")
        if len(names) < config.quorum or no_wait:
            if len(names) < config.quorum:
                view.err(f"the drill needs {config.quorum - len(names)} more officer(s): each runs "
                         f"'mpc recovery contribute --ceremony {cer.ceremony_id.hex()} --recovery-key FILE'")
        else:
            cer = c.wait_ceremony(cer.ceremony_id, opts.timeout, on_change=lambda v: view.err(f"  drill: {v.state}"))
    _show(ctx, {"ceremony": cer.as_dict()}, ceremony_rows(cer))
    return _ceremony_exit(cer)


@_command(recovery_group, "contribute", "give your pieces to a ceremony (verified first: order, bundle, targets); role officer")
@click.option("--ceremony", "ceremony_id", type=CEREMONY_ID, required=True, help="the ceremony id (hex; a restore's is its order id)")
@RECOVERY_KEY
def cmd_recovery_contribute(ctx: click.Context, ceremony_id: bytes, recovery_key: Path) -> int:
    with _client(_opts(ctx)) as c:
        priv = _read_identity(recovery_key, "--recovery-key")
        _need_cluster_file(c, admin_set=True)
        cer = c.contribute(ceremony_id, priv)
    _show(ctx, {"ceremony": cer.as_dict()}, ceremony_rows(cer))
    return _ceremony_exit(cer)


@_command(recovery_group, "status", "one ceremony (drill, restore, export), or every one")
@click.argument("ceremony_id", type=CEREMONY_ID, metavar="[ID]", required=False)
@click.option("--key", "key_id", type=KEY_ID, default=None, help="only this key's ceremonies")
def cmd_recovery_status(ctx: click.Context, ceremony_id: bytes | None, key_id: bytes | None) -> int:
    with _client(_opts(ctx)) as c:
        if ceremony_id is not None:
            cer = c.ceremony(ceremony_id)
            op = None
            if cer.follow_up_operation:
                try:
                    op = c.key_operation(cer.follow_up_operation)
                except MpcError as e:  # an officer may not read key operations; not started yet
                    if e.code not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND):
                        raise
            doc = {"ceremony": cer.as_dict()}
            if op is not None:
                doc["follow_up"] = op.as_dict()
            _show(ctx, doc, ceremony_rows(cer, op))
            return _ceremony_exit(cer)
        cs = c.ceremonies(key_id)
    if _opts(ctx).json:
        view.out(json.dumps([x.as_dict() for x in cs], indent=2))
        return Exit.OK
    if not cs:
        view.out("no ceremonies")
    for x in cs:
        ok = sum(t.state == "ok" for t in x.targets)
        view.out(escape(f"{x.ceremony_id.hex()}  {x.kind:<7} {x.state.upper():<10} key {x.key_id.hex()[:16]}  epoch {x.epoch}  "
                        f"officers {len(x.officers)}/{x.quorum}  targets ok {ok}/{len(x.targets)}  {_when(x.created_unix_ms)}"))
    return Exit.OK


def not_replaced(bundle: BackupBundle, history: Sequence[SignedRosterChange], order: RecoveryOrder) -> list[int]:
    """The order's target nodes whose identity key in the newest roster of ``history`` is still
    the one that signed their part of ``bundle`` (the roster at the part's roster version): nodes
    never replaced since the backup, which likely still hold the key (a typo in ``--nodes``)."""
    if not history:
        return []
    now = history[-1].change.new_roster
    rosters = {h.change.new_roster.version: h.change.new_roster for h in history}
    out = []
    for t in order.targets:
        part = next((p.part for p in bundle.parts if p.part.share_index == t.share_index), None)
        then = rosters.get(part.roster_version) if part is not None else None
        old, new = (then.entry(t.node) if then else None), now.entry(t.node)
        if old is not None and new is not None and hmac.compare_digest(old.identity_key, new.identity_key):
            out.append(t.node)
    return out


@_command(recovery_group, "restore", "propose a restore order of nodes' shares (then a refresh or reshare); role admin")
@click.option("--key", "key_id", type=KEY_ID, required=True, help="key id (hex)")
@click.option("--nodes", type=IndexList(), required=True, help="the replaced nodes whose shares are restored, e.g. 3,4,5")
@click.option("--reshare-threshold", type=UInt(2, MAX_INDEX), default=None, help="follow up with a reshare to this threshold")
@click.option("--reshare-nodes", type=IndexList(), default=None, help="follow up with a reshare to these nodes")
@REASON
@VALID_FOR
@click.option("--no-wait", is_flag=True, help="accepted for symmetry: the follow-up runs after the officers' pieces, never waited for")
def cmd_recovery_restore(ctx: click.Context, key_id: bytes, nodes: tuple[int, ...], reshare_threshold: int | None,
                         reshare_nodes: tuple[int, ...] | None, reason: str, valid_for: int, no_wait: bool) -> int:
    with _client(_opts(ctx)) as c:
        _need_signer(c)
        _need_cluster_file(c, admin_set=True)
        order = c.build_recovery_order(key_id, nodes=nodes, reason=reason, reshare_threshold=reshare_threshold,
                                       reshare_nodes=reshare_nodes, valid_for_s=valid_for)
        _bundle = c.export_backup(key_id, order.bundle_digest)[2]
        for n in not_replaced(_bundle, c.roster().history, order):
            view.err(f"warning: node {n} still has the identity key that signed its backup part: it was not replaced. A node "
                     f"that holds the key refuses a restore; if its host is lost, replace it first ('mpc node replace {n} "
                     "--enrolment FILE'), else leave it out of --nodes")
        view.err(f"once approved, officers run 'mpc recovery contribute --ceremony {order.order_id.hex()} --recovery-key FILE'")
        return _finish(ctx, c, c.propose_recovery_order(order), no_wait=True)


@_command(recovery_group, "export-order", "propose a BREAK-GLASS export of a whole private key to an off-line age recipient; role admin")
@click.option("--key", "key_id", type=KEY_ID, required=True, help="key id (hex)")
@click.option("--recipient", required=True, metavar="age1...", help="the off-line machine's age recipient")
@REASON
@VALID_FOR
def cmd_recovery_export_order(ctx: click.Context, key_id: bytes, recipient: str, reason: str, valid_for: int) -> int:
    with _client(_opts(ctx)) as c:
        try:
            pub = agekeys.parse_recipient(recipient)
        except (agekeys.AgeKeyError, ValueError) as e:
            raise CliUsage(f"--recipient: not an age recipient ({escape(str(e))[:200]})") from None
        _need_signer(c)
        _need_cluster_file(c, admin_set=True)
        order = c.build_recovery_order(key_id, export_recipient=pub, reason=reason, valid_for_s=valid_for)
        view.err(f"BREAK-GLASS: this order exports the WHOLE private key of {key_id.hex()}; it needs the export quorum "
                 "and is audited loudly on every node and the coordinator")
        return _finish(ctx, c, c.propose_recovery_order(order), no_wait=True)


@_command(recovery_group, "pieces", "write an export ceremony's pieces (and its signed order) to a file for the off-line machine")
@click.option("--ceremony", "ceremony_id", type=CEREMONY_ID, required=True, help="the export ceremony id (hex)")
@click.option("--out", type=PathArg("FILE"), required=True, help="the pieces file to write (JSON; age files only this machine cannot open)")
def cmd_recovery_pieces(ctx: click.Context, ceremony_id: bytes, out: Path) -> int:
    with _client(_opts(ctx)) as c:
        doc = c.export_pieces(ceremony_id)
    _write_secret(out, (json.dumps(doc, indent=2) + "\n").encode(), "--out", overwrite=True)
    _show(ctx, {"file": str(out), "ceremony_id": doc["ceremony_id"], "pieces": len(doc["pieces"])},
          [("ceremony", doc["ceremony_id"]), ("pieces", len(doc["pieces"])), ("written", str(out)),
           ("next", f"on the off-line machine: mpc --cluster DIR recovery export-key --bundle FILE --pieces {out} "
                    "--identity FILE --out FILE")])
    return Exit.OK


def _read_small(path: Path, option: str, limit: int) -> bytes:
    try:
        data = path.read_bytes() if path.stat().st_size <= limit else b""
    except OSError as e:
        raise CliUsage(f"{option}: cannot read {quote(str(path))}: {e.strerror or type(e).__name__}") from None
    if not data:
        raise CliUsage(f"{option}: {quote(str(path))} is empty or more than {limit} bytes")
    return data


def _read_order_file(path: Path) -> SignedRecoveryOrder:
    """A signed recovery order: its binary encoding, or a JSON document (a pieces file) with
    ``signed_order`` hex. CliUsage naming --order."""
    data = _read_small(path, "--order", MAX_PIECES_FILE)
    raw = data
    if data[:1] == b"{":
        try:
            doc = json.loads(data)
            raw = bytes.fromhex(doc["signed_order"])
        except (ValueError, KeyError, TypeError):
            raise CliUsage(f"--order: {quote(str(path))} is JSON without a hex signed_order") from None
    try:
        return SignedRecoveryOrder.from_bytes(raw)
    except GovernanceError as e:
        raise CliUsage(f"--order: {quote(str(path))}: {e.field}: {escape(e.reason)[:200]}") from None


@_command(recovery_group, "export-key", "on the off-line machine: rebuild an exported key from the officers' pieces (PEM, 0600)")
@click.option("--ceremony", "ceremony_id", type=CEREMONY_ID, default=None, help="the export ceremony id (hex; on-line)")
@click.option("--bundle", type=InFile(), default=None, help="off-line: the bundle file the order names ('backup export')")
@click.option("--pieces", type=InFile(), default=None, help="off-line: the pieces file ('recovery pieces')")
@click.option("--order", type=InFile(), default=None, help="off-line: the signed order (default: the one in the pieces file)")
@click.option("--identity", type=InFile(), required=True, help="the off-line machine's age identity (the order's recipient)")
@click.option("--out", type=PathArg("FILE"), required=True, help="the private key file to create (PKCS#8 PEM, never overwritten)")
def cmd_recovery_export_key(ctx: click.Context, ceremony_id: bytes | None, bundle: Path | None, pieces: Path | None,
                            order: Path | None, identity: Path, out: Path) -> int:
    offline = bundle is not None or pieces is not None or order is not None
    if offline and ceremony_id is not None:
        raise CliUsage("--ceremony: give either --ceremony (on-line) or --bundle and --pieces (off-line), not both")
    if not offline and ceremony_id is None:
        _cluster_info(_opts(ctx))  # both ways need DIR/cluster.json (the admin set): name a bad --cluster first
        raise CliUsage("--ceremony: give --ceremony ID (on-line), or --bundle FILE --pieces FILE (off-line)")
    if offline and (bundle is None or pieces is None):
        raise CliUsage(f"--{'bundle' if bundle is None else 'pieces'}: off-line, give both --bundle and --pieces")
    priv = _read_identity(identity, "--identity")
    if out.exists():
        raise CliUsage(f"--out: {quote(str(out))} exists (not overwritten)")
    if offline:
        assert bundle is not None and pieces is not None
        admins = _admin_set_offline(_opts(ctx))
        bundle_data = _read_small(bundle, "--bundle", MAX_BUNDLE_FILE)
        try:
            doc = json.loads(_read_small(pieces, "--pieces", MAX_PIECES_FILE))
        except ValueError:
            raise CliUsage(f"--pieces: {quote(str(pieces))} is not JSON (a pieces file: 'mpc recovery pieces')") from None
        cid, digest, in_file, export_pieces = read_pieces_document(doc)
        signed = _read_order_file(order) if order is not None else in_file
        if signed is None:
            raise CliUsage("--order: the pieces file carries no order: give --order FILE")
        if in_file is not None and in_file.to_bytes() != signed.to_bytes():
            raise CliUsage("--order: is not the order the pieces file carries")
        given = hashlib.sha256(bundle_data).digest()
        if given != digest:
            raise CliUsage(f"--bundle: is not the bundle the pieces file names (bundle_digest; this file is "
                           f"{given.hex()[:16]}); on-line, 'mpc backup export --key KEY --bundle-digest {digest.hex()} "
                           f"--out FILE' writes it")
        x, ord_, outcomes = offline_export_key(admins, bundle_data, signed, export_pieces, priv, ceremony_id=cid)
    else:
        assert ceremony_id is not None
        with _client(_opts(ctx)) as c:
            _need_cluster_file(c, admin_set=True)
            x, ord_, outcomes = c.export_private_key(ceremony_id, priv)
    pem = ec.derive_private_key(x, ec.SECP256K1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
    )
    del x
    _write_secret(out, pem, "--out", overwrite=False)
    doc_out = {"key_id": ord_.key_id.hex(), "public_key": ord_.public_key.hex(), "chain_code": ord_.chain_code.hex(),
               "file": str(out), "offline": offline,
               "outcomes": {str(k): {str(i): o for i, o in v.items()} for k, v in outcomes.items()}}
    _show(ctx, doc_out, [("key", doc_out["key_id"]), ("public key", doc_out["public_key"]), ("chain code", doc_out["chain_code"]),
                         ("checked", "the rebuilt key matches the public key"), ("written", f"{out} (PKCS#8 PEM, mode 0600)")])
    return Exit.OK


# --- node replace --------------------------------------------------------------------------------


@_command(node_group, "replace", "propose rotating node N to a replacement host's keys (its enrolment file); role admin")
@click.argument("index", type=UInt(1, MAX_INDEX), metavar="N")
@click.option("--enrolment", type=PathArg("FILE"), required=True,
              help="JSON of the new host: index, name, identity_key, encryption_key, tls_fingerprint, endpoint")
@NO_WAIT
def cmd_node_replace(ctx: click.Context, index: int, enrolment: Path, no_wait: bool) -> int:
    with _client(_opts(ctx)) as c:
        entry = read_enrolment(enrolment, replacement=True)
        if entry.index != index:
            raise CliUsage(f"--enrolment: is for node {entry.index}, not node {index}")
        held = c.roster().roster.entry(index)
        if held is not None and held.name != entry.name:
            raise CliUsage(f"--enrolment: names {quote(entry.name)}, node {index} is {quote(held.name)} (a replacement keeps its name)")
        _need_signer(c)
        _need_cluster_file(c, admin_set=True)
        view.err(f"node {index} restarts with an empty store: restore its shares with 'mpc recovery restore --key K --nodes {index}'")
        p = c.replace_node(index, identity_key=entry.identity_key, encryption_key=entry.encryption_key,
                           tls_fingerprint=entry.tls_fingerprint, endpoint=entry.endpoint)
        return _finish(ctx, c, p, no_wait=no_wait)


# --- mpc status ----------------------------------------------------------------------------------


def status_doc(st: Any) -> dict[str, Any]:
    """What ``mpc status --json`` adds: ``recovery_config_version`` and ``backups`` (per key:
    epoch, backed up, bundle, last successful drill, overdue)."""
    return {
        "recovery_config_version": st.recovery_config_version,
        "backups": [{"key_id": bytes(b.key_id).hex(), "epoch": b.epoch, "backed_up": b.backed_up,
                     "bundle_digest": bytes(b.bundle_digest).hex(), "backup_unix_ms": b.backup_unix_ms,
                     "last_drill_unix_ms": b.last_drill_unix_ms, "drill_overdue": b.drill_overdue,
                     "last_drill_outcome": b.last_drill_outcome, "backup_error": b.backup_error} for b in st.backups],
    }


def status_rows(st: Any) -> list[view.Row]:
    """``recovery`` and one ``backup`` row per key of ``mpc status``."""
    if not st.recovery_config_version:
        return [("recovery", "no officers configured ('mpc recovery officers set')")]
    rows: list[view.Row] = [("recovery", f"config version {st.recovery_config_version}")]
    for b in st.backups:
        if b.backed_up:
            backed = f"bundle {bytes(b.bundle_digest).hex()[:16]} ({_when(b.backup_unix_ms)})"
        else:  # what is wrong and when the coordinator tries again (it retries by itself)
            backed = "NOT BACKED UP" + (f" ({escape(b.backup_error[:500])})" if b.backup_error else " (collection pending)")
        drill = f"last drill {_when(b.last_drill_unix_ms)}" + (f" ({b.last_drill_outcome})" if b.last_drill_outcome else "")
        overdue = "  DRILL OVERDUE" if b.drill_overdue else ""
        rows.append((f"backup {bytes(b.key_id).hex()[:16]}", f"epoch {b.epoch}  {backed}  {drill}{overdue}"))
    return rows
