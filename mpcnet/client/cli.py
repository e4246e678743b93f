"""'mpc': command-line client of the coordinator, acting as one identity.

\b
    mpc --cluster DIR --as admin1 keygen [--label L] [--scheme ecdsa-secp256k1|ed25519|schnorr-secp256k1-bip340]
    mpc --cluster DIR --as requester1 request sign --key KEY_ID --digest HEX [--path m/0/1]
                                [--description TEXT] [--ttl SECONDS] [--wait] [--chain-id N]
                                (ed25519: --message-file F | --message-hex HEX; bip340: [--taproot-root HEX])
    mpc --cluster DIR --as approver1 approve REQUEST_ID [--wait] [--expect-digest HEX]
    mpc --cluster DIR --as approver3 reject REQUEST_ID
    mpc --cluster DIR --as NAME request show REQUEST_ID [--wait]
    mpc --cluster DIR --as NAME request watch REQUEST_ID
    mpc --cluster DIR --as NAME requests [--state pending_approval] [--key KEY_ID]
    mpc --cluster DIR --as NAME policy show|propose|approve|proposals|push|attest ...
    mpc --cluster DIR --as auditor1 audit verify | audit export --jsonl [--out FILE]
    mpc audit verify --db PATH --public-key HEX     (a local audit.db, no cluster needed)
    mpc --cluster DIR --as NAME keys | pubkey --key KEY_ID [--path P] [--network testnet] | status [--watch [--interval S]]
    mpc --cluster DIR --as admin1 key refresh KEY | key reshare KEY --threshold T --nodes 1,2,4,5
    mpc --cluster DIR --as admin1 node add --enrolment FILE | node remove N | node rotate-keys N | node replace N --enrolment FILE
    mpc --cluster DIR --as admin2 lifecycle approve ID [--expect-digest HEX]   (lifecycle list|show)
    mpc --cluster DIR --as NAME roster show | roster push | key operations [KEY]
    mpc --cluster DIR --as NAME backup list|export|verify|piece|drill | officer keygen     (backup and recovery:
    mpc --cluster DIR --as NAME recovery officers set|show | restore | contribute | status | export-order | pieces | export-key)

'--as NAME' picks the identity in DIR/identities/NAME (certificate + Ed25519 key); approvals
and admin signatures are made here, with that key, never by the coordinator. Instead of
'--cluster', give '--endpoint HOST:PORT --tls-cert FILE --tls-key FILE --tls-ca FILE
[--signing-key FILE]'. Global options ('--cluster', '--as', '--json', '--timeout', ...)
are accepted before or after the subcommand; 'MPC_CLUSTER' and 'MPC_AS' (and
'MPC_ENDPOINT', 'MPC_TLS_CERT', 'MPC_TLS_KEY', 'MPC_TLS_CA', 'MPC_SIGNING_KEY')
stand for the options of the same name. Shell completion (bash, zsh, fish):
'eval "$(_MPC_COMPLETE=bash_source mpc)"' ('zsh_source', 'fish_source').
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import click
import grpc

from crypto_core.errors import UsageError
from crypto_core.params import MAX_LABEL
from governance import digits
from governance.approval import MAX_DESCRIPTION
from governance.errors import GovernanceError
from governance.policy import KeyPolicy, RateLimit
from governance.text import escape, quote
from mpcnet.client import cli_pools as _cli_pools, cli_render as view, cli_schnorr
from mpcnet.client.audit_outbox_note import queued_note
from mpcnet.client.cli_args import EXIT_TABLE, Exit, PathText
from mpcnet.client.sdk import SIGN_STATES, TERMINAL_STATES, MpcClient, MpcError, NodeState, SignRequest, to_path
from mpcnet.common import cliutil
from mpcnet.common.cliutil import Choice, Endpoint, Hex, Identifier, InFile, Seconds, Text, UInt, parse_hex
from mpcnet.common.fsutil import write_atomic
from mpcnet.common.pki import CertPaths, PkiError
from mpcnet.common.stores.audit import export_jsonl, verify_audit

F = TypeVar("F", bound=Callable[..., Any])

UINT32_MAX = 2**32 - 1
CHAIN_ID_MAX = (2**64 - 1) // 2 - 36  # EIP-2294: the largest chain id whose EIP-155 v fits in 64 bits
WAIT_MAX_S = 366 * 86400.0
RPC_TIMEOUT_S = 300.0
_JSON_LINES = "mpc.json_lines"  # ctx.meta key: with --json, this command prints one JSON document per line
_GLOBALS = "mpc.globals"  # ctx.meta key: the global options given so far (group first, then subcommand)
_FROM_ENV = "mpc.from_env"  # ctx.meta key: the names of those whose value came from the environment


class CliUsage(click.UsageError):
    """A usage error found after parsing (a file, the cluster directory, a combination of options)."""


@dataclass(frozen=True)
class GlobalOpts:
    """The global options, wherever they were given (after the subcommand wins)."""

    cluster: str | None = None
    as_name: str | None = None
    endpoint: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    signing_key: Path | None = None
    genesis: Path | None = None  # with endpoint: the admin set and node endpoints (issue 13, cli_deploy)
    json: bool = False
    timeout: float | None = None  # seconds to wait for a request to end; None: no limit
    rpc_timeout: float = RPC_TIMEOUT_S  # seconds per call
    from_env: frozenset[str] = frozenset()  # the options above whose value came from the environment


def _opts(ctx: click.Context) -> GlobalOpts:
    return GlobalOpts(**ctx.meta.get(_GLOBALS, {}), from_env=frozenset(ctx.meta.get(_FROM_ENV, ())))


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and value is not False and param.name is not None:
        ctx.meta.setdefault(_GLOBALS, {})[param.name] = value
        from_env: set[str] = ctx.meta.setdefault(_FROM_ENV, set())
        if ctx.get_parameter_source(param.name) == click.core.ParameterSource.ENVIRONMENT:
            from_env.add(param.name)
        else:
            from_env.discard(param.name)
    return value


def _global_options(top: bool) -> Callable[[F], F]:
    """The global options, on the root group (shown in ``mpc --help``, read from the environment)
    and, hidden, on every group and subcommand (so they are accepted after it too)."""

    def opt(*decls: str, env: str | None = None, **kw: Any) -> Callable[[F], F]:
        return click.option(
            *decls, callback=_remember, expose_value=False, hidden=not top, envvar=env if top else None,
            show_envvar=bool(env and top), **kw,
        )

    specs = [
        opt("--cluster", env="MPC_CLUSTER", metavar="DIR", help="cluster directory (reads DIR/cluster.json)"),
        opt("--as", "as_name", env="MPC_AS", type=Identifier("name"), help="act as this identity (DIR/identities/NAME)"),
        opt("--endpoint", env="MPC_ENDPOINT", type=Endpoint(), help="coordinator HOST:PORT (instead of --cluster)"),
        opt("--tls-cert", env="MPC_TLS_CERT", type=InFile(), help="with --endpoint: client certificate (PEM)"),
        opt("--tls-key", env="MPC_TLS_KEY", type=InFile(), help="with --endpoint: the client certificate's private key (PEM)"),
        opt("--tls-ca", env="MPC_TLS_CA", type=InFile(), help="with --endpoint: CA certificate (PEM)"),
        opt("--signing-key", env="MPC_SIGNING_KEY", type=InFile(), help="with --endpoint: Ed25519 key (PEM) to sign approvals"),
        opt("--genesis", env="MPC_GENESIS", type=InFile(), help="with --endpoint: the cluster's admin-signed genesis.json "
            "(the admin set and the nodes' endpoints, for policy and roster commands)"),
        opt("--json", is_flag=True, default=False, help="machine-readable output (one JSON document on stdout)"),
        opt("--timeout", type=Seconds(WAIT_MAX_S), help="--wait/watch: give up (exit 3) after this many seconds; default: no limit"),
        opt("--rpc-timeout", type=Seconds(86400.0), help=f"seconds each call may take (default {RPC_TIMEOUT_S:g})"),
    ]

    def deco(f: F) -> F:
        for spec in reversed(specs):
            f = spec(f)
        return f

    return deco


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
LEAF_EPILOG = "The global options of 'mpc --help' (--cluster, --as, --json, --timeout, ...) are accepted here too."


_JSON_LINES = "mpc.json_lines"
"""``ctx.meta`` flag: this command writes JSON lines (one document per line) with ``--json``."""
_WAITING_FOR = "mpc.waiting_for"
"""``ctx.meta``: the id of the request this command waits for (or watches): with ``--json`` its
error document names it (``"request_id"``), so a script can resume with ``request show ID --wait``."""


class _Root(click.Group):
    """The ``mpc`` group: with ``--json``, a server's error is also the one JSON document on stdout."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MpcError as e:  # main prints the stderr line
            if _opts(ctx).json:
                # after JSON lines (request watch), the error is one line too
                indent = None if ctx.meta.get(_JSON_LINES) else 2
                doc: dict[str, Any] = {"error": {"code": e.code.name, "message": e.message}}
                if ctx.meta.get(_WAITING_FOR):
                    doc["request_id"] = ctx.meta[_WAITING_FOR]
                view.out(json.dumps(doc, indent=indent))
            raise


@click.group(cls=_Root, help=__doc__, epilog=EXIT_TABLE, context_settings=CONTEXT)
@_global_options(top=True)
def cli() -> None:
    pass


def _group(parent: click.Group, name: str, help: str) -> click.Group:
    @_global_options(top=False)
    def g() -> None:
        pass

    return parent.group(name, help=help, epilog=LEAF_EPILOG, context_settings=CONTEXT)(g)


def _command(parent: click.Group, name: str, help: str) -> Callable[[F], click.Command]:
    def deco(f: F) -> click.Command:
        make = parent.command(name, help=help, epilog=LEAF_EPILOG, context_settings=CONTEXT)
        return make(_global_options(top=False)(click.pass_context(f)))

    return deco


request_group = _group(cli, "request", "signing requests: sign, show, watch")
policy_group = _group(cli, "policy", "key policies: show, propose, approve, proposals, push, attest")
audit_group = _group(cli, "audit", "audit trail: verify, export")

KEY_ID = Hex(32)
CHAIN_ID = click.option("--chain-id", type=UInt(1, CHAIN_ID_MAX), help="show the Ethereum signature (v) for this EIP-155 chain id")


# --- connecting ------------------------------------------------------------------------------


def _cluster_info(opts: GlobalOpts) -> dict[str, Any]:
    """DIR/cluster.json of ``--cluster DIR`` (CliUsage if there is none or it is not a cluster description)."""
    if not opts.cluster:
        raise CliUsage("this command needs --cluster DIR (or MPC_CLUSTER)")
    if "\x00" in opts.cluster:
        raise CliUsage(f"--cluster: {quote(opts.cluster)} is not a directory name")
    where = Path(opts.cluster) / "cluster.json"
    try:
        info = json.loads(where.read_text(encoding="utf-8"))
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise CliUsage(f"--cluster: {quote(opts.cluster)} is not a cluster directory (cluster.json: {why})") from None
    except ValueError:
        raise CliUsage(f"--cluster: {quote(opts.cluster)} is not a cluster directory (cluster.json is not valid JSON)") from None
    if not isinstance(info, dict):
        raise CliUsage(f"--cluster: {quote(opts.cluster)} is not a cluster directory (cluster.json is not a JSON object)")
    return info


def _client(ap: object, opts: GlobalOpts) -> MpcClient:
    """The client the global options describe (``ap`` is unused: tests replace this function)."""
    if opts.cluster and opts.endpoint:  # the command line beats the environment; two of one source conflict
        cluster_env, endpoint_env = "cluster" in opts.from_env, "endpoint" in opts.from_env
        if cluster_env == endpoint_env:
            where = "MPC_CLUSTER and MPC_ENDPOINT are both set" if cluster_env else "--cluster and --endpoint are both given"
            raise CliUsage(f"{where}: give one of them (--cluster DIR --as NAME, or --endpoint HOST:PORT with --tls-*)")
        if cluster_env:
            opts = replace(opts, cluster=None)
    if opts.cluster:
        info = _cluster_info(opts)
        if not opts.as_name:
            names = sorted(info.get("identities", {})) if isinstance(info.get("identities"), dict) else []
            raise CliUsage("give --as NAME to choose who you act as" + (f" (one of: {', '.join(names)})" if names else ""))
        try:
            return MpcClient.from_cluster(opts.cluster, identity=opts.as_name, timeout=opts.rpc_timeout)
        except KeyError as e:
            raise CliUsage(f"--as: {e.args[0] if e.args else e}") from None
        except (OSError, ValueError, TypeError, PkiError) as e:
            raise CliUsage(f"--cluster: cannot read the cluster description or identity {opts.as_name}: {e}") from None
    if not (opts.endpoint and opts.tls_cert and opts.tls_key and opts.tls_ca):
        raise CliUsage("give --cluster DIR --as NAME, or --endpoint HOST:PORT --tls-cert FILE --tls-key FILE --tls-ca FILE")
    identity = None
    if opts.signing_key:
        identity = _signing_identity(opts.signing_key, opts.tls_cert, opts.tls_key)
    try:
        client = MpcClient(opts.endpoint, CertPaths(opts.tls_cert, opts.tls_key), opts.tls_ca, timeout=opts.rpc_timeout, identity=identity)
        if opts.genesis:
            from mpcnet.client.cli_deploy import genesis_for_client

            client.admin_set, client.node_endpoints = genesis_for_client(opts.genesis)
        return client
    except (OSError, ValueError, PkiError) as e:
        what, _, why = str(e).partition(": ")
        option = {"cert": "--tls-cert", "key": "--tls-key", "ca_cert": "--tls-ca"}.get(what)
        raise CliUsage(f"{option}: {why}" if option else f"--tls-cert/--tls-key/--tls-ca: {e}") from None


def _signing_identity(signing_key: Path, cert: Path, key_file: Path) -> Any:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from mpcnet.client.identities import Identity
    from mpcnet.common.pki import identity_from_cert

    try:
        key = serialization.load_pem_private_key(signing_key.read_bytes(), password=None)
    except OSError as e:
        raise CliUsage(f"--signing-key: cannot read {quote(str(signing_key))}: {e.strerror or type(e).__name__}") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):  # the last: a key type the library does not know
        raise CliUsage(f"--signing-key: {quote(str(signing_key))} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CliUsage(f"--signing-key: {quote(str(signing_key))} is not an Ed25519 key")
    try:
        who = identity_from_cert(cert.read_bytes())
    except (OSError, ValueError, PkiError) as e:
        raise CliUsage(f"--tls-cert: {e}") from None
    return Identity(who.name, who.role, CertPaths(cert, key_file), key)


def _need_signer(c: MpcClient) -> None:
    """Commands that sign with the caller's Ed25519 key: a usage error, worded for the CLI, without one."""
    if getattr(c, "identity", True) is None:
        raise CliUsage(
            "this command signs with your Ed25519 key: give --cluster DIR --as NAME (an identity with a signing key), "
            "or --signing-key FILE with --endpoint"
        )


def _need_cluster_file(c: MpcClient, *, admin_set: bool = False, nodes: bool = False) -> None:
    """Commands that need what DIR/cluster.json or the genesis holds (the admin set, the node endpoints)."""
    missing = (admin_set and getattr(c, "admin_set", True) is None) or (nodes and not getattr(c, "node_endpoints", True))
    if missing:
        what = "the cluster's admin set" if admin_set and getattr(c, "admin_set", True) is None else "the nodes' endpoints"
        raise CliUsage(f"this command needs {what}: with --endpoint give --genesis FILE (MPC_GENESIS), or give --cluster DIR --as NAME")


def _show(ctx: click.Context, doc: Any, rows: list[view.Row]) -> None:
    view.show(_opts(ctx).json, doc, rows)


def _gov(e: GovernanceError) -> CliUsage:
    return CliUsage(f"{e.field}: {e.reason}")


# --- keys ------------------------------------------------------------------------------------


@_command(cli, "keygen", "create a key (DKG on every node); role admin")
@click.option("--label", type=Text(MAX_LABEL, MAX_LABEL), default="", help=f"a name for the key (at most {MAX_LABEL} bytes of UTF-8)")
@click.option("--request-id", type=Identifier("request"), default=None, help="idempotency key [A-Za-z0-9._-]{1,64}")
@cli_schnorr.scheme_option
def cmd_keygen(ctx: click.Context, label: str, request_id: str | None, scheme: str) -> int:
    with _client(None, _opts(ctx)) as c:
        # the DKG holds the call for up to the coordinator's dkg_timeout_s: say so first (stderr)
        nodes = f"{len(c.node_endpoints)} nodes" if c.node_endpoints else "every node"
        view.err(f"creating a key{f' (request {request_id})' if request_id else ''}: DKG on {nodes}...")
        if request_id:
            ctx.meta[_WAITING_FOR] = request_id  # an error (e.g. --rpc-timeout) names it; 'request show ID' tells how it ended
        key = c.create_key(label, request_id=request_id or "", scheme=scheme)
    d = key.describe()
    _show(ctx, d, view.key_rows(d))
    return Exit.OK


@_command(cli, "keys", "list keys")
def cmd_keys(ctx: click.Context) -> int:
    with _client(None, _opts(ctx)) as c:
        keys = [_cli_pools.key_doc(k) for k in c.list_keys()]
    if _opts(ctx).json:
        view.out(json.dumps(keys, indent=2))
        return Exit.OK
    if not keys:
        view.out("no keys")
    for k in keys:
        view.out(view.key_list_line(k))
    return Exit.OK


@_command(cli, "pubkey", "a key's public key (SEC1 and PEM) or derived public key (--path), its chain code, xpub and Ethereum address; "
          "ed25519: the key and its Solana address; schnorr-secp256k1-bip340: internal and output key, Taproot address")
@click.option("--key", "key_id", type=KEY_ID, required=True, help="key id (hex)")
@click.option("--path", type=PathText(), default=None, help="BIP32 path, e.g. m/0/1 (non-hardened)")
@cli_schnorr.network_options
def cmd_pubkey(ctx: click.Context, key_id: bytes, path: str | None, network: str, taproot_root: bytes | None) -> int:
    with _client(None, _opts(ctx)) as c:
        d = cli_schnorr.pubkey_doc(c.get_key(key_id), path, network, taproot_root)
    _show(ctx, d, view.key_rows(d))
    return Exit.OK


@_command(cli, "status", "nodes as the coordinator sees them; --watch: a live view (nodes, keys, sessions, signing rate, latency)")
@click.option("--watch", is_flag=True, default=False, help="refresh every --interval seconds until Ctrl-C (exit 0)")
@click.option("--interval", type=Seconds(3600.0), default=None, help="with --watch: seconds between refreshes [default: 2]")
@click.option("--count", type=UInt(1, 1_000_000), default=None, help="with --watch: stop after this many refreshes")
def cmd_status(ctx: click.Context, watch: bool, interval: float | None, count: int | None) -> int:
    if interval is not None and not watch and count is None:
        raise CliUsage("--interval: only with --watch (mpc status --watch --interval S)")
    if watch or count is not None:
        interval = 2.0 if interval is None else interval
        from mpcnet.client import cli_watch

        opts = _opts(ctx)
        if opts.json:
            ctx.meta[_JSON_LINES] = True
        info = _cluster_info(opts) if opts.cluster and not opts.endpoint else None
        with _client(None, opts) as c:
            return cli_watch.run_watch(c, info, interval, sys.stdout, tty=sys.stdout.isatty(), json_lines=opts.json, count=count)
    with _client(None, _opts(ctx)) as c:
        st = c.cluster_status()
        pools = _cli_pools.load(c, st)  # issue 14: presignature pools (labels from ListKeys when there are pools)
    states = [NodeState.from_proto(n) for n in st.nodes]
    doc = {
        "threshold": st.threshold, "parties": st.parties, "governance_root": st.governance_root.hex(),
        "nodes": [n.as_dict() for n in states], **_cli_lifecycle.status_doc(st), **_cli_backup.status_doc(st),
        **_cli_pools.status_doc(pools), "coordinator_store": _store_doc(st),
    }
    rows: list[view.Row] = [("cluster", f"{st.threshold}-of-{st.parties}"), ("governance root", st.governance_root.hex())]
    rows.append(("store", _store_text(st)))  # the coordinator's own (a node's: its Health)
    rows += _cli_lifecycle.status_rows(st)
    frost = any(n.frost_nonces for n in states)  # issue 16: the stock FROST signing draws from, once there is one
    for n, raw in zip(states, st.nodes, strict=True):
        state = "REVOKED" if raw.revoked else "up" if n.healthy else "DOWN " + n.last_error
        sync = "" if n.policies_synced or raw.revoked else "  (policies not yet confirmed)"
        nonces = f"  frost nonces {n.frost_nonces}" if frost and not raw.revoked else ""
        rows.append((n.name, f"{n.endpoint}  {state}  {n.clock_text}{nonces}{sync}"))
    rows += _cli_lifecycle.operation_rows(st)
    rows += _cli_backup.status_rows(st)
    rows += _cli_pools.status_rows(pools)
    _show(ctx, doc, rows)
    return Exit.OK


def _store_doc(st: Any) -> list[dict[str, str]]:
    """``coordinator_store`` of ``mpc status --json``: the coordinator's stores whose last write
    failed (``store``, ``reason``), empty when healthy (or a coordinator that does not report it)."""
    return [{"store": f.store, "reason": f.reason} for f in st.store_failures]


def _store_text(st: Any) -> str:
    """The ``store`` row (the coordinator's own stores): ``ok``, or each failing store and why
    (escaped by the view)."""
    if not st.store_failures:
        return "ok"
    return "; ".join(f"FAILING: the coordinator's {f.store} cannot be written ({f.reason}); requests are refused UNAVAILABLE "
                     "until a write succeeds" for f in st.store_failures)


# --- signing requests ------------------------------------------------------------------------


def _show_request(
    ctx: click.Context, r: SignRequest, chain_id: int | None, *, waited: bool, c: MpcClient | None = None,
) -> int:
    """The approver's view of ``r`` (with ``c``: a bip340 request's Taproot output key and address,
    issue 16); exit 1 if a waited-for request ended other than DONE."""
    tap = None if c is None else cli_schnorr.taproot_outputs(lambda key_id: c.get_key(key_id), r)  # fetched for bip340 only
    _show(ctx, view.request_doc(r, chain_id, tap), view.request_lines(r, chain_id, tap))
    if waited and r.state != "done":
        return Exit.FAILED
    return Exit.OK


def _retrying(request_id: str, ctx: click.Context) -> Callable[[str], None]:
    """What a wait says on stderr when the coordinator stops answering (once per outage), so a
    wait that shows nothing says why and how it ends."""
    until = "until the request ends" if _opts(ctx).timeout is None else "until it ends or --timeout passes"

    def say(why: str) -> None:
        view.err(f"mpc: request {request_id}: the wait is interrupted ({why[:200]}); retrying {until} (Ctrl-C to stop)")

    return say


def _wait(c: MpcClient, ctx: click.Context, request_id: str) -> SignRequest:
    """Wait until the request ends (or --timeout passes: MpcError DEADLINE_EXCEEDED, exit 3)."""
    ctx.meta[_WAITING_FOR] = request_id
    return c.wait_sign_request(request_id, timeout=_opts(ctx).timeout, on_retry=_retrying(request_id, ctx))


@_command(request_group, "sign", "ask for a signature (approvers then decide); role requester")
@click.option("--key", "key_id", type=KEY_ID, required=True, help="key id (hex)")
@click.option("--digest", type=Hex(32), default=None, help="32-byte digest (hex); schnorr-secp256k1-bip340: the 32-byte message")
@cli_schnorr.message_options
@click.option("--path", type=PathText(), default=None, help="BIP32 path, e.g. m/0/1 (non-hardened)")
@click.option("--description", type=Text(MAX_DESCRIPTION), default="", help="what this is for (shown to approvers)")
@click.option("--request-id", type=Identifier("request"), default=None, help="idempotency key [A-Za-z0-9._-]{1,64}")
@click.option("--ttl", type=UInt(0, UINT32_MAX), default=0, help="seconds until it expires (at most the policy's TTL; 0: the policy's)")
@click.option("--wait", is_flag=True, help="print the request id on stderr, then wait until it is DONE, REJECTED, EXPIRED or FAILED")
@CHAIN_ID
def cmd_request_sign(
    ctx: click.Context, key_id: bytes, digest: bytes | None, message_file: Path | None, message_hex: bytes | None,
    taproot_root: bytes | None, path: str | None, description: str, request_id: str | None, ttl: int, wait: bool, chain_id: int | None,
) -> int:
    given_digest = digest is not None
    digest, message, root = cli_schnorr.sign_payload(digest, message_file, message_hex, taproot_root)
    with _client(None, _opts(ctx)) as c:
        try:
            r = c.submit_sign_request(
                key_id, digest, path=path, description=description, request_id=request_id or "", ttl_seconds=ttl, message=message,
                taproot_merkle_root=root,
            )
        except MpcError as e:  # issue 16: options that do not fit the key's scheme are a usage error naming the option
            if e.code != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            opt = "--message-file" if message_file is not None else "--message-hex" if message_hex is not None else None
            try:
                scheme = c.get_key(key_id).scheme
            except MpcError:
                raise e from None
            why = cli_schnorr.payload_mismatch(key_id, scheme, digest=given_digest, message_option=opt, taproot_root=bool(root), path=path)
            if why is None:
                raise
            raise click.UsageError(why) from None
        if wait:
            view.err(f"request {r.request_id} submitted; waiting...")
            r = _wait(c, ctx, r.request_id)
        return _show_request(ctx, r, chain_id, waited=wait, c=c)


@_command(request_group, "show", "a request's state, approvals and signature")
@click.argument("request_id", type=Identifier("request"), metavar="REQUEST_ID")
@click.option("--wait", is_flag=True, help="wait until it ends; exit 0 only if it ended DONE")
@CHAIN_ID
def cmd_request_show(ctx: click.Context, request_id: str, wait: bool, chain_id: int | None) -> int:
    with _client(None, _opts(ctx)) as c:
        try:
            if wait:
                view.err(f"waiting for request {request_id} to end...")
            r = _wait(c, ctx, request_id) if wait else c.get_sign_request(request_id)
        except MpcError as e:
            if e.code != grpc.StatusCode.NOT_FOUND:
                raise
            try:
                info = c.get_request(request_id)  # a keygen request (or a sign request from before approvals)
            except MpcError:
                raise e from None
            d = info.as_dict()
            rows: list[view.Row] = [("request_id", info.request_id), ("kind", info.kind), ("state", info.state), ("key_id", d["key_id"])]
            if info.state == "failed":
                rows.append(("error", f"{info.error_code}: {info.error_message}"))
            _show(ctx, d, rows)
            return Exit.FAILED if wait and info.state == "failed" else Exit.OK  # as for a signing request
        return _show_request(ctx, r, chain_id, waited=wait, c=c)


@_command(request_group, "watch", "print every change of a request until it ends (exit 0 only if it ended DONE); "
          "with --json, JSON lines: one document per change (and an error) on one line each")
@click.argument("request_id", type=Identifier("request"), metavar="REQUEST_ID")
@CHAIN_ID
def cmd_request_watch(ctx: click.Context, request_id: str, chain_id: int | None) -> int:
    last = None
    ctx.meta[_JSON_LINES] = True
    ctx.meta[_WAITING_FOR] = request_id
    with _client(None, _opts(ctx)) as c:
        for last in c.watch_sign_request(request_id, timeout=_opts(ctx).timeout, on_retry=_retrying(request_id, ctx)):
            if _opts(ctx).json:
                print(json.dumps(view.request_doc(last, chain_id)), flush=True)
            else:
                print(view.watch_line(last), flush=True)
    if last is None or last.state not in TERMINAL_STATES:
        view.err(f"mpc: request {request_id} has not ended (the watch stopped)")
        return Exit.NO_ANSWER
    return Exit.OK if last.state == "done" else Exit.FAILED


@_command(cli, "requests", "list signing requests (newest first)")
@click.option("--state", type=Choice(SIGN_STATES), default=None)
@click.option("--key", "key_id", type=KEY_ID, default=None, help="key id (hex)")
@click.option("--limit", type=UInt(0, UINT32_MAX), default=0, help="at most this many (0: the server's default)")
def cmd_requests(ctx: click.Context, state: str | None, key_id: bytes | None, limit: int) -> int:
    with _client(None, _opts(ctx)) as c:
        rs = c.list_sign_requests(state=state, key_id=key_id, limit=limit)
    if _opts(ctx).json:
        view.out(json.dumps([r.as_dict() for r in rs], indent=2))
        return Exit.OK
    if not rs:
        view.out("no requests")
    for r in rs:
        view.out(view.request_list_line(r))
    return Exit.OK


@_command(cli, "approve", "approve a signing request (signed with your key); role approver")
@click.argument("request_id", type=Identifier("request"), metavar="REQUEST_ID")
@click.option("--wait", is_flag=True, help="if this approval completes the quorum, wait for the signature (exit 0 only if DONE)")
@click.option("--expect-digest", type=Hex(32), default=None, metavar="HEX", help="sign nothing unless the request is for this digest")
@click.option("--expect-key", type=KEY_ID, default=None, metavar="KEY_ID", help="sign nothing unless the request is for this key (hex)")
@click.option("--expect-path", type=PathText(), default=None, help="sign nothing unless the request is for this path (m: none)")
@cli_schnorr.expect_message_option
@CHAIN_ID
def cmd_approve(
    ctx: click.Context, request_id: str, wait: bool, expect_digest: bytes | None, expect_key: bytes | None, expect_path: str | None,
    expect_message_file: Path | None, chain_id: int | None,
) -> int:
    expect_digest = cli_schnorr.expected_digest(expect_digest, expect_message_file)
    with _client(None, _opts(ctx)) as c:
        _need_signer(c)
        path = None if expect_path is None else to_path(expect_path)
        try:
            r = c.approve(request_id, expect_digest=expect_digest, expect_key=expect_key, expect_path=path)
        except MpcError as e:  # issue 16: say which file the expected digest came from
            if expect_message_file is None or e.code != grpc.StatusCode.FAILED_PRECONDITION or not e.message.startswith("digest:"):
                raise
            raise MpcError(e.code, f"{e.message} (the expected digest is the SHA-256 of --expect-message-file "
                                   f"{quote(str(expect_message_file))}: the request is for another message)") from None
        waited = wait and r.state != "pending_approval"  # the quorum is complete (or the request ended)
        if waited and r.state not in TERMINAL_STATES:
            # the approval is recorded: say so before a wait that may be long (or interrupted)
            view.err(f"request {r.request_id} approved; the quorum is complete; waiting for the signature...")
            r = _wait(c, ctx, request_id)
        return _show_request(ctx, r, chain_id, waited=waited, c=c)


@_command(cli, "reject", "reject a signing request (signed with your key); role approver")
@click.argument("request_id", type=Identifier("request"), metavar="REQUEST_ID")
def cmd_reject(ctx: click.Context, request_id: str) -> int:
    with _client(None, _opts(ctx)) as c:
        _need_signer(c)
        r = c.reject(request_id)
        return _show_request(ctx, r, None, waited=False, c=c)


# --- policies --------------------------------------------------------------------------------


@_command(policy_group, "show", "the policy in force for a key (or the default)")
@click.option("--key", "key_id", type=KEY_ID, default=None, help="key id (hex); default: the default policy")
def cmd_policy_show(ctx: click.Context, key_id: bytes | None) -> int:
    with _client(None, _opts(ctx)) as c:
        p = c.get_policy(key_id)
    d = p.as_dict()
    pol = p.policy
    scope = d["scope"] + (" (inherited: the key has no policy of its own)" if p.inherited else "")
    _show(ctx, d, [
        ("scope", scope), ("version", pol.version), ("digest", d["policy_digest"]),
        ("approvers", ", ".join(pol.approvers)), ("approval quorum", f"{pol.approval_quorum} of {len(pol.approvers)}"),
        ("requesters", ", ".join(sorted(pol.requesters)) or "nobody (frozen)"), ("request TTL", f"{pol.ttl_seconds} s"),
        ("rate limit", f"{pol.rate_limit.max_signatures} per {pol.rate_limit.window_seconds} s"),
        ("refresh period", _period(pol.refresh_period_s)),
        *_signed_rows(d),
    ])
    return Exit.OK


def _approver_keys(opts: GlobalOpts, names: str) -> dict[str, bytes]:
    """``--approvers``: NAME (an identity of DIR/cluster.json) or NAME=PUBLIC_KEY_HEX, comma-separated."""
    out: dict[str, bytes] = {}
    info = _cluster_info(opts) if opts.cluster else {}
    identities = info.get("identities", {}) if isinstance(info.get("identities"), dict) else {}
    for item in [x.strip() for x in names.split(",") if x.strip()]:
        name, _, key = item.partition("=")
        try:
            Identifier("name").convert(name, None, None)
        except click.BadParameter as e:
            raise CliUsage(f"--approvers: {e.message}") from None
        if key:
            field, text = f"--approvers: {name}", key
        else:
            ident = identities.get(name)
            if not isinstance(ident, dict) or not isinstance(ident.get("public_key"), str):
                raise CliUsage(f"--approvers: unknown identity {quote(name)} (give NAME=PUBLIC_KEY_HEX)")
            field, text = f"--approvers: {name} in cluster.json", ident["public_key"]
        try:
            out[name] = parse_hex(text, 32, field)
        except GovernanceError as e:
            raise _gov(e) from None
    return out


def _period(seconds: int) -> str:
    """``refresh_period_s`` as shown: ``none`` or ``N s (every ...)``."""
    if not seconds:
        return "none (the key is refreshed only when admins ask)"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{v} {u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")) if v]
    return f"{seconds} s ({' '.join(parts)}): refreshed when its shares are this old"


def _rate(text: str) -> RateLimit:
    n, sep, window = text.partition("/")
    if not sep:
        raise CliUsage("--rate: give N/SECONDS, e.g. 100/3600")
    try:
        return RateLimit(digits.parse_uint(n, "N", 0, UINT32_MAX), digits.parse_uint(window, "SECONDS", 0, UINT32_MAX))
    except GovernanceError as e:
        raise CliUsage(f"--rate: {e.field}: {e.reason} (give N/SECONDS, e.g. 100/3600)") from None


@_command(policy_group, "propose", "propose a change (the current policy with these fields changed); role admin")
@click.option("--key", "key_id", type=KEY_ID, default=None, help="key id (hex); default: the default policy")
@click.option("--approvers", default=None, help="comma-separated identity names (or NAME=PUBLIC_KEY_HEX)")
@click.option("--quorum", type=UInt(0, UINT32_MAX), default=None, help="approvals needed (m)")
@click.option("--requesters", default=None, help="comma-separated names allowed to request (empty: nobody)")
@click.option("--ttl", type=UInt(0, UINT32_MAX), default=None, help="longest a request may live, in seconds")
@click.option("--rate", default=None, help="rate limit N/SECONDS, e.g. 100/3600")
@click.option("--refresh-period", "refresh_period", type=UInt(0, UINT32_MAX), default=None,
              help="refresh the key's shares when they are this many seconds old (60 .. 31622400; 0: never)")
@click.option("--no-push", is_flag=True, help="if this applies the change, do not push it to the nodes directly")
def cmd_policy_propose(
    ctx: click.Context, key_id: bytes | None, approvers: str | None, quorum: int | None, requesters: str | None, ttl: int | None,
    rate: str | None, refresh_period: int | None, no_push: bool,
) -> int:
    opts = _opts(ctx)
    changes: dict[str, Any] = {}
    if approvers:
        changes["approvers"] = _approver_keys(opts, approvers)
    if quorum is not None:
        changes["approval_quorum"] = quorum
    if requesters is not None:
        names = frozenset(x.strip() for x in requesters.split(",") if x.strip())
        for n in names:
            try:
                Identifier("name").convert(n, None, None)
            except click.BadParameter as e:
                raise CliUsage(f"--requesters: {e.message}") from None
        changes["requesters"] = names
    if ttl is not None:
        changes["ttl_seconds"] = ttl
    if rate:
        changes["rate_limit"] = _rate(rate)
    if refresh_period is not None:
        changes["refresh_period_s"] = refresh_period
    with _client(None, opts) as c:
        _need_signer(c)
        _need_cluster_file(c, admin_set=True)
        try:
            new: KeyPolicy = c.next_policy(key_id, **changes)
        except GovernanceError as e:
            raise _gov(e) from None
        p = c.propose_policy(new, key_id=key_id, push=not no_push)
    return _show_proposal(ctx, p)


def _signed_rows(d: dict[str, Any], quorum: str = "") -> list[view.Row]:
    """``signed by`` (admin signatures verified against our admin set only) and, if any name or
    the whole list could not be verified, an ``UNVERIFIED`` row (never counted as signed)."""
    rows: list[view.Row] = [("signed by", ", ".join(d["signed_by"]) + quorum)]
    if not d["signatures_verified"]:
        names = ", ".join(d["unverified_signers"]) or "-"
        rows.append(("UNVERIFIED", f"{names} (no admin set to check the signatures: give --cluster DIR)"))
    elif d["unverified_signers"]:
        rows.append(("UNVERIFIED", f"{', '.join(d['unverified_signers'])} (signature does not verify or not an admin; not counted)"))
    return rows


def _show_proposal(ctx: click.Context, p: Any) -> int:
    d = p.as_dict()
    pol = p.signed_change.change.new_policy
    _show(ctx, d, [
        ("proposal_id", p.proposal_id), ("state", p.state.upper()), ("scope", d["scope"]), ("new version", pol.version),
        ("approvers", ", ".join(pol.approvers)), ("approval quorum", f"{pol.approval_quorum} of {len(pol.approvers)}"),
        ("requesters", ", ".join(sorted(pol.requesters)) or "nobody"), ("request TTL", f"{pol.ttl_seconds} s"),
        ("rate limit", f"{pol.rate_limit.max_signatures} per {pol.rate_limit.window_seconds} s"),
        ("refresh period", _period(pol.refresh_period_s)),
        *_signed_rows(d, f" ({len(set(p.signers))} of {p.admin_quorum} needed)"),
        *[(f"pushed to {node}", str(outcome)[:500]) for node, outcome in sorted((p.pushed or {}).items())],
    ])
    return Exit.OK


def _report(ctx: click.Context, outcomes: dict[str, str]) -> int:
    """Per-node outcomes; exit 1 if any is an error."""
    _show(ctx, outcomes, [(name, str(v)[:500]) for name, v in sorted(outcomes.items())])
    return Exit.FAILED if any(v.startswith("error") for v in outcomes.values()) else Exit.OK


@_command(policy_group, "push", "install a scope's signed change history on every node directly; role admin")
@click.option("--key", "key_id", type=KEY_ID, default=None, help="key id (hex); default: the default policy")
def cmd_policy_push(ctx: click.Context, key_id: bytes | None) -> int:
    with _client(None, _opts(ctx)) as c:
        _need_cluster_file(c, nodes=True)
        extra = _follow_roster(ctx, c)
        return _report(ctx, {**c.push_policy(key_id), **extra})


@_command(policy_group, "attest", "sign an attestation of every scope's policy head, send it to the coordinator and nodes; role admin")
def cmd_policy_attest(ctx: click.Context) -> int:
    with _client(None, _opts(ctx)) as c:
        _need_signer(c)
        _need_cluster_file(c, admin_set=True, nodes=True)
        extra = _follow_roster(ctx, c)
        return _report(ctx, {**c.attest(), **extra})


def _follow_roster(ctx: click.Context, c: MpcClient) -> dict[str, str]:
    """With ``--genesis``: push to the nodes of the verified roster in force (mpcnet.client.rosternodes);
    the outcome rows to add to the report (an error row when the roster could not be fetched)."""
    if _opts(ctx).genesis and not _opts(ctx).cluster:
        from mpcnet.client.rosternodes import follow_verified_roster

        return follow_verified_roster(c)
    return {}


@_command(policy_group, "approve", "sign a pending proposal; role admin")
@click.argument("proposal_id", type=Identifier("request"), metavar="PROPOSAL_ID")
@click.option("--no-push", is_flag=True, help="if this applies the change, do not push it (and an attestation) to the nodes directly")
def cmd_policy_approve(ctx: click.Context, proposal_id: str, no_push: bool) -> int:
    with _client(None, _opts(ctx)) as c:
        _need_signer(c)
        return _show_proposal(ctx, c.approve_policy(proposal_id, push=not no_push))


@_command(policy_group, "proposals", "list policy proposals")
@click.option("--state", type=Choice(("pending", "applied", "superseded")), default=None)
def cmd_policy_proposals(ctx: click.Context, state: str | None) -> int:
    with _client(None, _opts(ctx)) as c:
        ps = c.list_proposals(state)
    if _opts(ctx).json:
        view.out(json.dumps([p.as_dict() for p in ps], indent=2))
        return Exit.OK
    if not ps:
        view.out("no proposals")
    for p in ps:
        d = p.as_dict()
        odd = f"  UNVERIFIED: {', '.join(d['unverified_signers'])}" if d["unverified_signers"] else ""
        view.out(escape(f"{p.proposal_id}  {p.state.upper():<10} scope {d['scope'][:16]:<16} v{d['new_policy']['version']}  "
                        f"signed by {', '.join(d['signed_by']) or '-'}{odd}"))
    return Exit.OK


# --- audit -----------------------------------------------------------------------------------

# What verify_audit reports, before reading any entry, when the file or key given is the wrong one
# (a usage error, exit 2), as opposed to a broken chain (exit 1).
_NOT_THIS_LOG = ("not an audit log", "the log names another public key", "cannot open ", "cannot read ")


@_command(audit_group, "verify", "verify every component's chain and signatures (role auditor), or one local --db")
@click.option("--db", type=InFile(), default=None, help="verify this local audit.db instead (no cluster needed)")
@click.option("--public-key", type=Hex(32), default=None, help="with --db: the component's Ed25519 public key (hex)")
def cmd_audit_verify(ctx: click.Context, db: Path | None, public_key: bytes | None) -> int:
    from mpcnet.client.audit import HeadsError, verify_cluster

    opts = _opts(ctx)
    if db is None and public_key is not None:
        raise CliUsage("--public-key: only with --db (a cluster's keys come from its roster)")
    if db is not None:
        if public_key is None:
            raise CliUsage("audit verify --db needs --public-key HEX")
        try:
            report = verify_audit(db, public_key)
        except GovernanceError as e:
            raise CliUsage(f"--public-key: {e.reason}") from None
        if note := queued_note(db):  # a node's last entries may still be in its store (issue 14)
            view.err(note)
        if not report.ok and report.first_broken is None and report.reason.startswith(_NOT_THIS_LOG):
            hint = " (check --public-key)" if "public key" in report.reason else ""
            raise CliUsage(f"--db: {escape(report.reason)}{hint}")
        doc = {"db": str(db), "ok": report.ok, "entries": report.entries, "first_broken": report.first_broken, "reason": report.reason}
        if opts.json:
            view.out(json.dumps(doc, indent=2))
        elif report.ok:
            view.out(escape(f"{db}: ok, {report.entries} entries, chain and signatures verified"))
        else:
            where = f"entry {report.first_broken}: " if report.first_broken is not None else ""
            view.out(escape(f"{db}: BROKEN at {where}{report.reason}"))
        return Exit.OK if report.ok else Exit.FAILED
    if public_key is not None:
        raise CliUsage("--public-key goes with --db")
    info = _cluster_info(opts)
    heads = Path(opts.cluster) / "identities" / opts.as_name / "audit-heads.json" if opts.cluster and opts.as_name else None
    with _client(None, opts) as c:
        try:
            reports = verify_cluster(c, info, heads)
        except HeadsError as e:
            raise CliUsage(str(e)) from None
    ok = all(r.ok for r in reports)
    if opts.json:
        view.out(json.dumps({"ok": ok, "components": [r.as_dict() for r in reports]}, indent=2))
    else:
        for r in reports:
            if r.ok:
                head = f", head {r.head[0]} {r.head[1][:16]}..." if r.head else ""
                view.out(escape(f"{r.component:<12} ok      {r.entries:>6} entries, chain and signatures verified{head}"))
            else:
                where = f"entry {r.first_broken}: " if r.first_broken is not None else ""
                view.out(escape(f"{r.component:<12} BROKEN  {r.entries:>6} entries; {where}{r.reason}"))
        view.out("audit trail verified: every chain and signature is intact, and the trail is complete" if ok
                 else "audit trail NOT verified (see above)")
    return Exit.OK if ok else Exit.FAILED


@_command(audit_group, "export", "write the entries as JSON lines (role auditor), or one local --db")
@click.option("--jsonl", is_flag=True, help="JSON lines (one entry per line; the only format)")
@click.option("--component", type=Identifier("name"), default=None, help="only this component (coordinator, node-1, ...)")
@click.option("--db", type=InFile(), default=None, help="export this local audit.db instead (no cluster needed)")
@click.option(
    "--out", default=None, metavar="FILE", help="write to this file (replaced at once when the export is complete) instead of stdout"
)
def cmd_audit_export(ctx: click.Context, jsonl: bool, component: str | None, db: Path | None, out: str | None) -> int:
    if not jsonl:
        raise CliUsage("audit export: give --jsonl (the only format)")
    ctx.meta[_JSON_LINES] = True  # with --json, an error after some entries is one line too
    if out is not None:  # refuse an unwritable destination before fetching anything
        if not _writable_path(out):
            raise CliUsage(f"--out: cannot write {quote(out)}: not a writable file path")
    # --out: the file is replaced at once when the whole export is in hand (a failed fetch leaves
    # any earlier file as it was, never a partial one)
    buf: Any = io.StringIO() if out else sys.stdout
    if db is not None:
        try:
            n = export_jsonl(db, buf)
        except GovernanceError as e:
            raise CliUsage(f"--db: {e.field}: {e.reason}") from None
        if note := queued_note(db):
            view.err(note)
        if out:
            _write_out(out, buf)
            view.err(f"wrote {n} entries to {out}")
        return Exit.OK
    opts = _opts(ctx)
    ctx.meta[_JSON_LINES] = True  # with --json, a server's error after some entries is one line too
    info = _cluster_info(opts)
    audit = info.get("audit")
    names = [component] if component else list(audit) if isinstance(audit, dict) else []
    total = 0
    with _client(None, opts) as c:
        for name in names:
            for entry in c.fetch_audit(name).entries:
                try:
                    details: Any = json.loads(entry.details_json)
                except ValueError:
                    details = entry.details_json
                buf.write(json.dumps({
                    "component": name, "seq": entry.seq, "timestamp_ms": entry.timestamp_ms, "actor": entry.actor, "action": entry.action,
                    "request_id": entry.request_id, "outcome": entry.outcome, "details": details, "prev_hash": entry.prev_hash.hex(),
                    "entry_hash": entry.entry_hash.hex(), "signature": entry.signature.hex(),
                }, sort_keys=True) + "\n")  # ASCII: the entries are not verified, and may go to a terminal
                total += 1
    if out:
        _write_out(out, buf)
        view.err(f"wrote {total} entries of {len(names)} component(s) to {out} (not verified: run 'audit verify')")
    return Exit.OK


def _writable_path(out: str) -> bool:
    """True if ``out`` names a file that can be written (not a directory; its directory exists and is writable)."""
    if not out or "\x00" in out:
        return False
    target = Path(out)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        return not target.is_dir() and parent.is_dir() and os.access(parent, os.W_OK) and len(target.name.encode()) <= 255
    except (OSError, ValueError):
        return False


def _write_out(path: str, buf: io.StringIO) -> None:
    try:
        write_atomic(Path(path), buf.getvalue().encode("utf-8"), mode=0o644)
    except OSError as e:
        raise CliUsage(f"--out: cannot write {quote(path)}: {e.strerror or type(e).__name__}") from None


# key, node, roster, lifecycle (issue 11) and backup, recovery, officer (issue 12): each module adds its
# groups to `cli` when imported (they need the helpers above)
from mpcnet.client import cli_backup as _cli_backup, cli_lifecycle as _cli_lifecycle  # noqa: E402
from mpcnet.client.cli_deploy import register as _register_deploy  # noqa: E402  (pki, identity, genesis: off-line)

_register_deploy(cli)

# --- entry point -----------------------------------------------------------------------------


def commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every leaf command of the tree as ``(("request", "sign"), command)`` (tests run each one)."""
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


_NO_ANSWER = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_STILL = re.compile(r"request ([A-Za-z0-9._-]{1,64}) still [a-z_]+ after \S+ s")  # the SDK's: --timeout passed
_NO_ANSWER_IN_TIME = (
    f" (the coordinator did not answer within --rpc-timeout (default {RPC_TIMEOUT_S:g} s): "
    "give a longer --rpc-timeout SECONDS, and see 'mpc status' for the cluster's health)"
)
_UNREACHABLE = (
    " (the coordinator cannot be reached: is the cluster running? 'mpc-cluster status --dir DIR' shows it and "
    "'mpc-cluster up --dir DIR' starts it; with --endpoint, check HOST:PORT and that --tls-ca is the cluster's CA)"
)


def _mpc_errors(e: Exception) -> tuple[int, str] | None:
    """What ``mpc`` adds to :func:`mpcnet.common.cliutil.run`: a server's answer is exit 1
    (refused, failed) or 3 (no answer); bad input found by the governance rules or the SDK is a
    usage error (exit 2)."""
    if isinstance(e, MpcError):
        hint = ""
        if e.code == grpc.StatusCode.UNAVAILABLE and e.message.startswith("failed to connect"):  # grpc's, not the server's
            hint = _UNREACHABLE
        elif e.code == grpc.StatusCode.DEADLINE_EXCEEDED and e.message == "Deadline Exceeded":  # grpc's: --rpc-timeout passed
            hint = _NO_ANSWER_IN_TIME
        elif e.code == grpc.StatusCode.DEADLINE_EXCEEDED and (m := _STILL.fullmatch(e.message)) is not None:  # --timeout
            hint = f" (the request goes on: 'mpc request show {m.group(1)} --wait' waits again)"
        return (Exit.NO_ANSWER if e.code in _NO_ANSWER else Exit.FAILED), f"{e.code.name}: {e.message}{hint}"
    if isinstance(e, GovernanceError):
        return Exit.USAGE, f"error: {e.field}: {e.reason}"
    if isinstance(e, UsageError):
        return Exit.USAGE, f"error: {e}"
    return None


def main(argv: list[str] | None = None) -> int:
    """Run ``mpc`` with ``argv`` (default: ``sys.argv[1:]``); the exit code (:class:`Exit`), never a
    traceback (``MPC_DEBUG=1`` shows one for a bug)."""
    return cliutil.run(cli, argv, "mpc", handle=_mpc_errors)


if __name__ == "__main__":
    _cli_lifecycle.register(cli)  # run as a script, this module is not the one cli_lifecycle imported
    _cli_backup.register(cli)
    _register_deploy(cli)
    sys.exit(main())
