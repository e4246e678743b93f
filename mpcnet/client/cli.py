"""``mpc``: command-line client of the coordinator, acting as one identity.

    mpc --cluster DIR --as admin1 keygen [--label L]
    mpc --cluster DIR --as requester1 request sign --key KEY_ID --digest HEX [--path m/0/1]
                                                   [--description TEXT] [--ttl SECONDS] [--wait]
    mpc --cluster DIR --as approver1 approve REQUEST_ID [--wait] [--expect-digest HEX]
    mpc --cluster DIR --as approver3 reject REQUEST_ID
    mpc --cluster DIR --as NAME request show REQUEST_ID [--wait]
    mpc --cluster DIR --as NAME request watch REQUEST_ID
    mpc --cluster DIR --as NAME requests [--state pending_approval] [--key KEY_ID]
    mpc --cluster DIR --as NAME policy show [--key KEY_ID]
    mpc --cluster DIR --as admin1 policy propose [--key KEY_ID] [--approvers a,b,c] [--quorum M]
                                                 [--requesters r1,r2] [--ttl S] [--rate N/SECONDS]
    mpc --cluster DIR --as admin2 policy approve PROPOSAL_ID [--no-push]
    mpc --cluster DIR --as NAME policy proposals [--state pending]
    mpc --cluster DIR --as admin1 policy push [--key KEY_ID]   (the signed history, to every node directly)
    mpc --cluster DIR --as admin1 policy attest                (confirm every scope's head to every node)
    mpc --cluster DIR --as auditor1 audit verify
    mpc --cluster DIR --as auditor1 audit export --jsonl [--component node-1] [--out FILE]
    mpc audit verify --db PATH --public-key HEX          (a local audit.db, no cluster needed)
    mpc audit export --jsonl --db PATH
    mpc --cluster DIR --as NAME keys | pubkey --key KEY_ID [--path P] | status

``--as NAME`` picks the identity in DIR/identities/NAME (certificate + Ed25519 key); approvals
and admin signatures are made here, with that key, never by the coordinator. Every command
takes ``--json``. Instead of ``--cluster``, give ``--endpoint HOST:PORT --cert FILE --key FILE
--ca FILE [--signing-key FILE]``. Exit status: 0 on success, 1 when the server refused or
failed the request (the gRPC status and message are printed), or when an audit log does not
verify, or a waited-for request did not end DONE; 2 on bad usage.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import grpc

from crypto_core.errors import UsageError
from governance.errors import GovernanceError
from governance.policy import KeyPolicy, RateLimit
from mpcnet.client.sdk import SIGN_STATES, MpcClient, MpcError, NodeState, SignRequest, to_path
from mpcnet.common.fsutil import write_atomic
from mpcnet.common.pki import CertPaths, PkiError
from mpcnet.common.stores.audit import export_jsonl, verify_audit


def _hex(value: str, what: str) -> bytes:
    v = value.strip().lower().removeprefix("0x")
    try:
        return bytes.fromhex(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}: not hex") from None


def _print(args: argparse.Namespace, doc: Any, lines: list[tuple[str, Any]]) -> None:
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    width = max(len(k) for k, _ in lines) if lines else 0
    for k, v in lines:
        print(f"{k:<{width}}  {_term(v)}")


def _term(text: object) -> str:
    """Text from the coordinator (untrusted) or a caller, on one terminal line: every control,
    format or bidi character (newline, ESC, CSI, U+202E, ...) escaped, other text kept."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(text))


def _info(args: argparse.Namespace) -> dict[str, Any]:
    if not args.cluster:
        raise argparse.ArgumentTypeError("this command needs --cluster DIR")
    info: dict[str, Any] = json.loads((Path(args.cluster) / "cluster.json").read_text())
    return info


# --- keys ------------------------------------------------------------------------------------


def cmd_keygen(c: MpcClient, args: argparse.Namespace) -> int:
    key = c.create_key(args.label, request_id=args.request_id)
    d = key.describe()
    fields = [(k, d[k]) for k in ("key_id", "label", "status", "public_key", "ethereum_address")]
    _print(args, d, fields + [("threshold", f"{key.threshold}-of-{key.parties}")])
    return 0


def cmd_keys(c: MpcClient, args: argparse.Namespace) -> int:
    keys = [k.describe() for k in c.list_keys()]
    if args.json:
        print(json.dumps(keys, indent=2))
        return 0
    if not keys:
        print("no keys")
    for k in keys:
        print(f"{k['key_id']}  {k['status']:<8} {k['threshold']}-of-{k['parties']}  {k['ethereum_address']}  {_term(k['label'])}")
    return 0


def cmd_pubkey(c: MpcClient, args: argparse.Namespace) -> int:
    d = c.get_key(_hex(args.key, "key")).describe(args.path)
    _print(args, d, [(k, d[k]) for k in ("key_id", "path", "public_key", "public_key_uncompressed", "ethereum_address")])
    return 0


def cmd_status(c: MpcClient, args: argparse.Namespace) -> int:
    st = c.cluster_status()
    states = [NodeState.from_proto(n) for n in st.nodes]
    nodes = [n.as_dict() for n in states]
    doc = {"threshold": st.threshold, "parties": st.parties, "governance_root": st.governance_root.hex(), "nodes": nodes}
    lines: list[tuple[str, Any]] = [("cluster", f"{st.threshold}-of-{st.parties}"), ("governance root", st.governance_root.hex())]
    for n in states:
        state = "up" if n.healthy else "DOWN " + n.last_error
        sync = "" if n.policies_synced else "  (policies not yet confirmed)"
        lines.append((n.name, f"{n.endpoint}  {state}  {n.clock_text}{sync}"))
    _print(args, doc, lines)
    return 0


# --- signing requests ------------------------------------------------------------------------


def _request_lines(r: SignRequest) -> list[tuple[str, Any]]:
    d = r.as_dict()
    lines: list[tuple[str, Any]] = [
        ("request_id", r.request_id),
        ("state", r.state.upper()),
        ("key_id", d["key_id"]),
        ("digest", d["digest"]),
        ("path", d["path"]),
        ("requester", d["requester"]),
        ("description", d["description"]),
        ("policy", f"version {d['policy_version']} ({d['policy_digest'][:16]}...), {r.approval_quorum} of {r.approvers} approvers"),
        ("approved by", ", ".join(r.approved_by) or "-"),
    ]
    if r.rejected_by:
        lines.append(("rejected by", ", ".join(r.rejected_by)))
    lines.append(("expires", f"{d['expires_unix_ms']} (unix ms)"))
    if r.error_message:
        lines.append(("error", f"{r.error_code + ': ' if r.error_code else ''}{r.error_message}"))
    if r.signature:
        s = r.signature
        lines += [("signers", ", ".join(map(str, s.signers))), ("public_key", s.public_key.hex()), ("r", f"{s.r:064x}"),
                  ("s", f"{s.s:064x}"), ("recovery_id", s.recovery_id), ("der", s.der.hex())]
    return lines


def _show_request(args: argparse.Namespace, r: SignRequest) -> int:
    _print(args, r.as_dict(), _request_lines(r))
    if getattr(args, "wait", False) and r.state != "done":
        return 1
    return 0


def cmd_request_sign(c: MpcClient, args: argparse.Namespace) -> int:
    r = c.submit_sign_request(
        _hex(args.key, "key"), _hex(args.digest, "digest"), path=args.path, description=args.description,
        request_id=args.request_id, ttl_seconds=args.ttl,
    )
    if args.wait:
        r = c.wait_sign_request(r.request_id)
    return _show_request(args, r)


def cmd_request_show(c: MpcClient, args: argparse.Namespace) -> int:
    try:
        r = c.wait_sign_request(args.id) if args.wait else c.get_sign_request(args.id)
    except MpcError as e:
        if e.code != grpc.StatusCode.NOT_FOUND:
            raise
        try:
            info = c.get_request(args.id)  # a keygen request (or a sign request from before approvals)
        except MpcError:
            raise e from None
        d = info.as_dict()
        lines: list[tuple[str, Any]] = [
            ("request_id", info.request_id), ("kind", info.kind), ("state", info.state), ("key_id", d["key_id"])
        ]
        if info.state == "failed":
            lines.append(("error", f"{info.error_code}: {info.error_message}"))
        _print(args, d, lines)
        return 0
    return _show_request(args, r)


def cmd_request_watch(c: MpcClient, args: argparse.Namespace) -> int:
    last = None
    for last in c.watch_sign_request(args.id):
        if args.json:
            print(json.dumps(last.as_dict()), flush=True)
        else:
            extra = f" ({last.error_message})" if last.error_message else ""
            print(
                _term(f"{last.request_id}  {last.state.upper():<16} approved by: {', '.join(last.approved_by) or '-'}{extra}"), flush=True
            )
    return 0 if last is not None and last.state == "done" else 1


def cmd_requests(c: MpcClient, args: argparse.Namespace) -> int:
    rs = c.list_sign_requests(state=args.state, key_id=_hex(args.key, "key") if args.key else None, limit=args.limit)
    if args.json:
        print(json.dumps([r.as_dict() for r in rs], indent=2))
        return 0
    if not rs:
        print("no requests")
    for r in rs:
        q = r.request
        print(_term(
            f"{r.request_id:<28} {r.state.upper():<16} {len(r.approved_by)}/{r.approval_quorum}  "
            f"key {q.key_id.hex()[:16]}  by {q.requester:<12} {q.description[:40]!r}"
        ))
    return 0


def cmd_decide(c: MpcClient, args: argparse.Namespace) -> int:
    if args.command == "approve":
        expect = _hex(args.expect_digest, "expect-digest") if args.expect_digest else None
        key = _hex(args.expect_key, "expect-key") if args.expect_key else None
        try:
            path = None if args.expect_path is None else to_path(args.expect_path)
        except UsageError as e:
            raise argparse.ArgumentTypeError(f"expect-path: {e}") from None
        r = c.approve(args.id, expect_digest=expect, expect_key=key, expect_path=path)
    else:
        r = c.reject(args.id)
    if getattr(args, "wait", False) and r.state in ("pending_approval", "signing"):
        r = c.wait_sign_request(args.id) if r.state == "signing" else r
    _print(args, r.as_dict(), _request_lines(r))
    return 0


# --- policies --------------------------------------------------------------------------------


def cmd_policy_show(c: MpcClient, args: argparse.Namespace) -> int:
    p = c.get_policy(_hex(args.key, "key") if args.key else None)
    d = p.as_dict()
    pol = p.policy
    scope = d["scope"] + (" (inherited: the key has no policy of its own)" if p.inherited else "")
    _print(args, d, [
        ("scope", scope), ("version", pol.version), ("digest", d["policy_digest"]),
        ("approvers", ", ".join(pol.approvers)), ("approval quorum", f"{pol.approval_quorum} of {len(pol.approvers)}"),
        ("requesters", ", ".join(sorted(pol.requesters)) or "nobody (frozen)"), ("request TTL", f"{pol.ttl_seconds} s"),
        ("rate limit", f"{pol.rate_limit.max_signatures} per {pol.rate_limit.window_seconds} s"),
        ("signed by", ", ".join(d["signed_by"])),
    ])
    return 0


def _approver_keys(args: argparse.Namespace, names: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    info = json.loads((Path(args.cluster) / "cluster.json").read_text()) if args.cluster else {}
    for item in [x.strip() for x in names.split(",") if x.strip()]:
        if "=" in item:
            name, key = item.split("=", 1)
            out[name] = _hex(key, f"approvers: {name}")
            continue
        ident = info.get("identities", {}).get(item)
        if ident is None:
            raise argparse.ArgumentTypeError(f"approvers: unknown identity {item!r} (give NAME=PUBLIC_KEY_HEX)")
        out[item] = bytes.fromhex(ident["public_key"])
    return out


def cmd_policy_propose(c: MpcClient, args: argparse.Namespace) -> int:
    key_id = _hex(args.key, "key") if args.key else None
    changes: dict[str, Any] = {}
    if args.approvers:
        changes["approvers"] = _approver_keys(args, args.approvers)
    if args.quorum is not None:
        changes["approval_quorum"] = args.quorum
    if args.requesters is not None:
        changes["requesters"] = frozenset(x.strip() for x in args.requesters.split(",") if x.strip())
    if args.ttl is not None:
        changes["ttl_seconds"] = args.ttl
    if args.rate:
        try:
            n, window = args.rate.split("/")
            changes["rate_limit"] = RateLimit(int(n), int(window))
        except ValueError:
            raise argparse.ArgumentTypeError("rate: give N/SECONDS, e.g. 100/3600") from None
        except GovernanceError as e:
            raise argparse.ArgumentTypeError(f"rate: {e.field}: {e.reason}") from None
    try:
        new: KeyPolicy = c.next_policy(key_id, **changes)
    except GovernanceError as e:
        raise argparse.ArgumentTypeError(f"{e.field}: {e.reason}") from None
    p = c.propose_policy(new, key_id=key_id, push=not args.no_push)
    return _show_proposal(args, p)


def _show_proposal(args: argparse.Namespace, p: Any) -> int:
    d = p.as_dict()
    pol = p.signed_change.change.new_policy
    _print(args, d, [
        ("proposal_id", p.proposal_id), ("state", p.state.upper()), ("scope", d["scope"]), ("new version", pol.version),
        ("approvers", ", ".join(pol.approvers)), ("approval quorum", f"{pol.approval_quorum} of {len(pol.approvers)}"),
        ("requesters", ", ".join(sorted(pol.requesters)) or "nobody"), ("request TTL", f"{pol.ttl_seconds} s"),
        ("rate limit", f"{pol.rate_limit.max_signatures} per {pol.rate_limit.window_seconds} s"),
        ("signed by", f"{', '.join(p.signers)} ({len(set(p.signers))} of {p.admin_quorum} needed)"),
        *[(f"pushed to {node}", _safe(outcome)) for node, outcome in sorted((p.pushed or {}).items())],
    ])
    return 0


def _safe(text: str) -> str:
    """Server text shown on a terminal: printable ASCII only."""
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in text)[:500]


def _report(args: argparse.Namespace, out: dict[str, str]) -> int:
    """Per-node outcomes; exit 1 if any is an error."""
    _print(args, out, [(name, _safe(v)) for name, v in sorted(out.items())])
    return 1 if any(v.startswith("error") for v in out.values()) else 0


def cmd_policy_push(c: MpcClient, args: argparse.Namespace) -> int:
    return _report(args, c.push_policy(_hex(args.key, "key") if args.key else None))


def cmd_policy_attest(c: MpcClient, args: argparse.Namespace) -> int:
    return _report(args, c.attest())


def cmd_policy_approve(c: MpcClient, args: argparse.Namespace) -> int:
    return _show_proposal(args, c.approve_policy(args.id, push=not args.no_push))


def cmd_policy_proposals(c: MpcClient, args: argparse.Namespace) -> int:
    ps = c.list_proposals(args.state)
    if args.json:
        print(json.dumps([p.as_dict() for p in ps], indent=2))
        return 0
    if not ps:
        print("no proposals")
    for p in ps:
        d = p.as_dict()
        version = d["new_policy"]["version"]
        print(_term(f"{p.proposal_id}  {p.state.upper():<10} scope {d['scope'][:16]:<16} v{version}  signed by {', '.join(p.signers)}"))
    return 0


# --- audit -----------------------------------------------------------------------------------


def cmd_audit_verify(c: MpcClient | None, args: argparse.Namespace) -> int:
    from mpcnet.client.audit import HeadsError, verify_cluster

    if args.db:
        if not args.public_key:
            raise argparse.ArgumentTypeError("audit verify --db needs --public-key HEX")
        try:
            report = verify_audit(Path(args.db), _hex(args.public_key, "public-key"))
        except GovernanceError as e:
            raise argparse.ArgumentTypeError(f"{e.field}: {e.reason}") from None
        doc = {"db": str(args.db), "ok": report.ok, "entries": report.entries, "first_broken": report.first_broken, "reason": report.reason}
        if args.json:
            print(json.dumps(doc, indent=2))
        elif report.ok:
            print(f"{args.db}: ok, {report.entries} entries, chain and signatures verified")
        else:
            where = f"entry {report.first_broken}: " if report.first_broken is not None else ""
            print(f"{args.db}: BROKEN at {where}{_term(report.reason)}")
        return 0 if report.ok else 1
    assert c is not None
    info = _info(args)
    heads = None
    if args.cluster and args.as_name:
        heads = Path(args.cluster) / "identities" / args.as_name / "audit-heads.json"
    try:
        reports = verify_cluster(c, info, heads)
    except HeadsError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    ok = all(r.ok for r in reports)
    if args.json:
        print(json.dumps({"ok": ok, "components": [r.as_dict() for r in reports]}, indent=2))
    else:
        for r in reports:
            if r.ok:
                head = f", head {r.head[0]} {r.head[1][:16]}..." if r.head else ""
                print(f"{r.component:<12} ok      {r.entries:>6} entries, chain and signatures verified{head}")
            else:
                where = f"entry {r.first_broken}: " if r.first_broken is not None else ""
                print(f"{r.component:<12} BROKEN  {r.entries:>6} entries; {where}{_term(r.reason)}")
        verified = "audit trail verified: every chain and signature is intact, and the trail is complete"
        print(verified if ok else "audit trail NOT verified (see above)")
    return 0 if ok else 1


def cmd_audit_export(c: MpcClient | None, args: argparse.Namespace) -> int:
    if not args.jsonl:
        raise argparse.ArgumentTypeError("audit export: give --jsonl (the only format)")
    if args.out:  # refuse an unwritable destination before fetching anything
        target = Path(args.out)
        parent = target.parent if str(target.parent) else Path(".")
        if target.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
            raise argparse.ArgumentTypeError(f"out: cannot write {args.out}: not a writable file path")
    # --out: the file is replaced at once when the whole export is in hand (a failed fetch leaves
    # any earlier file as it was, never a partial one)
    out: Any = io.StringIO() if args.out else sys.stdout
    try:
        if args.db:
            try:
                n = export_jsonl(Path(args.db), out)
            except GovernanceError as e:
                raise argparse.ArgumentTypeError(f"{e.field}: {e.reason}") from None
            if args.out:
                _write_out(args.out, out)
                print(f"wrote {n} entries to {args.out}", file=sys.stderr)
            return 0
        assert c is not None
        info = _info(args)
        names = [args.component] if args.component else list(info["audit"])
        total = 0
        for name in names:
            for entry in c.fetch_audit(name).entries:
                try:
                    details: Any = json.loads(entry.details_json)
                except ValueError:
                    details = entry.details_json
                out.write(json.dumps({
                    "component": name, "seq": entry.seq, "timestamp_ms": entry.timestamp_ms, "actor": entry.actor, "action": entry.action,
                    "request_id": entry.request_id, "outcome": entry.outcome, "details": details, "prev_hash": entry.prev_hash.hex(),
                    "entry_hash": entry.entry_hash.hex(), "signature": entry.signature.hex(),
                }, sort_keys=True) + "\n")  # ASCII: the entries are not verified, and may go to a terminal
                total += 1
        if args.out:
            _write_out(args.out, out)
            print(f"wrote {total} entries of {len(names)} component(s) to {args.out} (not verified: run 'audit verify')", file=sys.stderr)
        return 0
    finally:
        if args.out:
            out.close()


def _write_out(path: str, buf: io.StringIO) -> None:
    try:
        write_atomic(Path(path), buf.getvalue().encode("utf-8"), mode=0o644)
    except OSError as e:
        raise argparse.ArgumentTypeError(f"out: cannot write {path}: {e.strerror or type(e).__name__}") from None


# --- parser ----------------------------------------------------------------------------------


def _uint32(text: str) -> int:
    """An argparse type: a whole number 0..2^32-1 (a protobuf uint32 field)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= n < 2**32:
        raise argparse.ArgumentTypeError(f"must be 0..{2**32 - 1}, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    ap = argparse.ArgumentParser(prog="mpc", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common])
    ap.add_argument("--cluster", type=Path, help="cluster directory (reads DIR/cluster.json)")
    ap.add_argument("--as", dest="as_name", metavar="NAME", help="act as this identity (DIR/identities/NAME)")
    ap.add_argument("--endpoint", help="coordinator HOST:PORT")
    ap.add_argument("--cert", type=Path, help="client certificate (PEM)")
    ap.add_argument("--key", dest="key_file", type=Path, help="client private key (PEM)")
    ap.add_argument("--ca", type=Path, help="CA certificate (PEM)")
    ap.add_argument("--signing-key", type=Path, help="Ed25519 signing key (PEM) for approvals and admin signatures")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per call")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("keygen", parents=[common], help="create a key (DKG on every node); role admin")
    p.add_argument("--label", default="")
    p.add_argument("--request-id", default="")
    p.set_defaults(fn=cmd_keygen)
    p = sub.add_parser("keys", parents=[common], help="list keys")
    p.set_defaults(fn=cmd_keys)
    p = sub.add_parser("pubkey", parents=[common], help="public key and Ethereum address of a key")
    p.add_argument("--key", required=True, help="key id (hex)")
    p.add_argument("--path", default=None, help="BIP32 path, e.g. m/0/1 (non-hardened)")
    p.set_defaults(fn=cmd_pubkey)
    p = sub.add_parser("status", parents=[common], help="nodes as the coordinator sees them")
    p.set_defaults(fn=cmd_status)

    p = sub.add_parser("request", parents=[common], help="signing requests: sign, show, watch")
    rsub = p.add_subparsers(dest="request_command", required=True)
    q = rsub.add_parser("sign", parents=[common], help="ask for a signature (waits for approvals); role requester")
    q.add_argument("--key", required=True, help="key id (hex)")
    q.add_argument("--digest", required=True, help="32-byte digest (hex)")
    q.add_argument("--path", default=None, help="BIP32 path, e.g. m/0/1 (non-hardened)")
    q.add_argument("--description", default="", help="what this is for (shown to approvers)")
    q.add_argument("--request-id", default="", help="idempotency key [A-Za-z0-9_-]{1,64}")
    q.add_argument("--ttl", type=int, default=0, help="seconds until it expires (at most the policy's TTL)")
    q.add_argument("--wait", action="store_true", help="wait until it is DONE, REJECTED, EXPIRED or FAILED")
    q.set_defaults(fn=cmd_request_sign)
    q = rsub.add_parser("show", parents=[common], help="a request's state, approvals and signature")
    q.add_argument("id")
    q.add_argument("--wait", action="store_true", help="wait until it ends")
    q.set_defaults(fn=cmd_request_show)
    q = rsub.add_parser("watch", parents=[common], help="print every change of a request until it ends")
    q.add_argument("id")
    q.set_defaults(fn=cmd_request_watch)
    p = sub.add_parser("requests", parents=[common], help="list signing requests (newest first)")
    p.add_argument("--state", choices=SIGN_STATES)
    p.add_argument("--key", default=None, help="key id (hex)")
    p.add_argument("--limit", type=_uint32, default=0, help="at most this many (0: the server's default)")
    p.set_defaults(fn=cmd_requests)
    for name, what in (("approve", "approve a signing request"), ("reject", "reject a signing request")):
        p = sub.add_parser(name, parents=[common], help=f"{what} (signed with your key); role approver")
        p.add_argument("id", metavar="REQUEST_ID")
        if name == "approve":
            p.add_argument("--wait", action="store_true", help="if this approval completes the quorum, wait for the signature")
            p.add_argument("--expect-digest", metavar="HEX", help="sign nothing unless the request is for this digest")
            p.add_argument("--expect-key", metavar="KEY_ID", help="sign nothing unless the request is for this key (hex)")
            p.add_argument("--expect-path", metavar="PATH", help="sign nothing unless the request is for this derivation path (m for none)")
        p.set_defaults(fn=cmd_decide)

    p = sub.add_parser("policy", parents=[common], help="key policies: show, propose, approve, proposals, push, attest")
    psub = p.add_subparsers(dest="policy_command", required=True)
    q = psub.add_parser("show", parents=[common], help="the policy in force for a key (or the default)")
    q.add_argument("--key", default=None, help="key id (hex); default: the default policy")
    q.set_defaults(fn=cmd_policy_show)
    q = psub.add_parser("propose", parents=[common], help="propose a change (the current policy with these fields changed); role admin")
    q.add_argument("--key", default=None, help="key id (hex); default: the default policy")
    q.add_argument("--approvers", help="comma-separated identity names (or NAME=PUBLIC_KEY_HEX)")
    q.add_argument("--quorum", type=int, help="approvals needed (m)")
    q.add_argument("--requesters", help="comma-separated names allowed to request (empty: nobody)")
    q.add_argument("--ttl", type=int, help="longest a request may live, in seconds")
    q.add_argument("--rate", help="rate limit N/SECONDS, e.g. 100/3600")
    q.add_argument("--no-push", action="store_true", help="if this applies the change, do not push it to the nodes directly")
    q.set_defaults(fn=cmd_policy_propose)
    q = psub.add_parser("approve", parents=[common], help="sign a pending proposal; role admin")
    q.add_argument("id", metavar="PROPOSAL_ID")
    q.add_argument(
        "--no-push", action="store_true", help="if this applies the change, do not push it (and an attestation) to the nodes directly"
    )
    q.set_defaults(fn=cmd_policy_approve)
    q = psub.add_parser("push", parents=[common], help="install a scope's signed change history on every node directly; role admin")
    q.add_argument("--key", default=None, help="key id (hex); default: the default policy")
    q.set_defaults(fn=cmd_policy_push)
    q = psub.add_parser(
        "attest", parents=[common],
        help="sign an attestation of every scope's policy head and send it to the coordinator and every node; role admin",
    )
    q.set_defaults(fn=cmd_policy_attest)
    q = psub.add_parser("proposals", parents=[common], help="list policy proposals")
    q.add_argument("--state", choices=("pending", "applied", "superseded"))
    q.set_defaults(fn=cmd_policy_proposals)

    p = sub.add_parser("audit", parents=[common], help="audit trail: verify, export")
    asub = p.add_subparsers(dest="audit_command", required=True)
    q = asub.add_parser("verify", parents=[common], help="verify every component's chain and signatures (role auditor), or one --db")
    q.add_argument("--db", type=Path, help="verify this local audit.db instead")
    q.add_argument("--public-key", help="with --db: the component's Ed25519 public key (hex)")
    q.set_defaults(fn=cmd_audit_verify, local_ok=True)
    q = asub.add_parser("export", parents=[common], help="write the entries as JSON lines (role auditor), or one --db")
    q.add_argument("--jsonl", action="store_true", help="JSON lines (one entry per line)")
    q.add_argument("--component", help="only this component (coordinator, node-1, ...)")
    q.add_argument("--db", type=Path, help="export this local audit.db instead")
    q.add_argument("--out", type=Path, help="write to this file instead of stdout")
    q.set_defaults(fn=cmd_audit_export, local_ok=True)
    return ap


def _client(ap: argparse.ArgumentParser, args: argparse.Namespace) -> MpcClient:
    if args.cluster:
        if not args.as_name:
            try:
                names = sorted(json.loads((Path(args.cluster) / "cluster.json").read_text()).get("identities", {}))
            except (OSError, ValueError):
                names = []
            ap.error("give --as NAME to choose who you act as" + (f" (one of: {', '.join(names)})" if names else ""))
        return MpcClient.from_cluster(args.cluster, identity=args.as_name, timeout=args.timeout)
    if not (args.endpoint and args.cert and args.key_file and args.ca):
        ap.error("give --cluster DIR --as NAME, or --endpoint, --cert, --key and --ca")
    identity = None
    if args.signing_key:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from mpcnet.client.identities import Identity
        from mpcnet.common.pki import identity_from_cert

        key = serialization.load_pem_private_key(args.signing_key.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            ap.error("--signing-key: not an Ed25519 key")
        who = identity_from_cert(args.cert.read_bytes())
        identity = Identity(who.name, who.role, CertPaths(args.cert, args.key_file), key)
    return MpcClient(args.endpoint, CertPaths(args.cert, args.key_file), args.ca, timeout=args.timeout, identity=identity)


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    args.json = getattr(args, "json", False)
    local = getattr(args, "local_ok", False) and getattr(args, "db", None) is not None
    try:
        if getattr(args, "path", None):
            to_path(args.path)
        client = None if local else _client(ap, args)
    except UsageError as e:
        ap.error(str(e))
    except (OSError, KeyError, ValueError, PkiError) as e:
        print(f"mpc: cannot read the cluster description or identity: {e}", file=sys.stderr)
        return 2
    try:
        if client is None:
            return int(args.fn(None, args))
        with client:
            return int(args.fn(client, args))
    except argparse.ArgumentTypeError as e:
        ap.error(str(e))
    except MpcError as e:
        if args.json:
            print(json.dumps({"error": {"code": e.code.name, "message": e.message}}, indent=2))
        print(f"mpc: {e.code.name}: {_term(e.message)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
