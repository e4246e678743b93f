"""``mpc``: command-line client of the coordinator.

    mpc --cluster DIR keygen [--label L]
    mpc --cluster DIR sign --key KEY_ID --digest HEX [--path m/0/1]
    mpc --cluster DIR keys
    mpc --cluster DIR pubkey --key KEY_ID [--path m/0/1]
    mpc --cluster DIR request --id REQUEST_ID
    mpc --cluster DIR status

Every command takes ``--json``. Instead of ``--cluster`` (which reads DIR/cluster.json), give
``--endpoint HOST:PORT --cert FILE --key FILE --ca FILE``. Exit status: 0 on success, 1 when the
server refused or failed the request (the gRPC status and message are printed), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from crypto_core.errors import UsageError
from mpcnet.client import MpcClient, MpcError, to_path
from mpcnet.pki import CertPaths


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
        print(f"{k:<{width}}  {v}")


def cmd_keygen(c: MpcClient, args: argparse.Namespace) -> None:
    key = c.create_key(args.label, request_id=args.request_id)
    d = key.describe()
    _print(args, d, [(k, d[k]) for k in ("key_id", "label", "status", "public_key", "ethereum_address")] + [("threshold", f"{key.threshold}-of-{key.parties}")])


def cmd_sign(c: MpcClient, args: argparse.Namespace) -> None:
    digest = _hex(args.digest, "digest")
    sig = c.sign(_hex(args.key, "key"), digest, path=args.path, request_id=args.request_id)
    d = sig.as_dict() | {"digest": digest.hex(), "path": args.path or "m"}
    _print(args, d, [("request_id", d["request_id"]), ("signers", ", ".join(map(str, sig.signers))), ("public_key", d["public_key"]),
                     ("path", d["path"]), ("digest", d["digest"]), ("r", d["r"]), ("s", d["s"]), ("recovery_id", d["recovery_id"]), ("der", d["der"])])


def cmd_keys(c: MpcClient, args: argparse.Namespace) -> None:
    keys = [k.describe() for k in c.list_keys()]
    if args.json:
        print(json.dumps(keys, indent=2))
        return
    if not keys:
        print("no keys")
    for k in keys:
        print(f"{k['key_id']}  {k['status']:<8} {k['threshold']}-of-{k['parties']}  {k['ethereum_address']}  {k['label']}")


def cmd_pubkey(c: MpcClient, args: argparse.Namespace) -> None:
    d = c.get_key(_hex(args.key, "key")).describe(args.path)
    _print(args, d, [(k, d[k]) for k in ("key_id", "path", "public_key", "public_key_uncompressed", "ethereum_address")])


def cmd_request(c: MpcClient, args: argparse.Namespace) -> None:
    info = c.get_request(args.id)
    d = info.as_dict()
    lines: list[tuple[str, Any]] = [("request_id", info.request_id), ("kind", info.kind), ("state", info.state), ("key_id", d["key_id"]), ("attempts", info.attempts)]
    if info.state == "failed":
        lines.append(("error", f"{info.error_code}: {info.error_message}"))
    if info.signature:
        lines += [("der", info.signature.der.hex()), ("recovery_id", info.signature.recovery_id)]
    _print(args, d, lines)


def cmd_status(c: MpcClient, args: argparse.Namespace) -> None:
    st = c.cluster_status()
    nodes = [{"index": n.index, "name": n.name, "endpoint": n.endpoint, "healthy": n.healthy, "last_error": n.last_error} for n in st.nodes]
    doc = {"threshold": st.threshold, "parties": st.parties, "nodes": nodes}
    _print(args, doc, [("cluster", f"{st.threshold}-of-{st.parties}")] + [(n["name"], f"{n['endpoint']}  {'up' if n['healthy'] else 'DOWN ' + n['last_error']}") for n in nodes])


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    ap = argparse.ArgumentParser(prog="mpc", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common])
    ap.add_argument("--cluster", type=Path, help="cluster directory (reads DIR/cluster.json)")
    ap.add_argument("--endpoint", help="coordinator HOST:PORT")
    ap.add_argument("--cert", type=Path, help="client certificate (PEM)")
    ap.add_argument("--key", dest="key_file", type=Path, help="client private key (PEM)")
    ap.add_argument("--ca", type=Path, help="CA certificate (PEM)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per call")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("keygen", parents=[common], help="create a key (DKG on every node)")
    p.add_argument("--label", default="")
    p.add_argument("--request-id", default="")
    p.set_defaults(fn=cmd_keygen)
    p = sub.add_parser("sign", parents=[common], help="sign a 32-byte digest")
    p.add_argument("--key", required=True, help="key id (hex)")
    p.add_argument("--digest", required=True, help="32-byte digest (hex)")
    p.add_argument("--path", default=None, help="BIP32 path, e.g. m/0/1 (non-hardened)")
    p.add_argument("--request-id", default="")
    p.set_defaults(fn=cmd_sign)
    p = sub.add_parser("keys", parents=[common], help="list keys")
    p.set_defaults(fn=cmd_keys)
    p = sub.add_parser("pubkey", parents=[common], help="public key and Ethereum address of a key")
    p.add_argument("--key", required=True, help="key id (hex)")
    p.add_argument("--path", default=None, help="BIP32 path, e.g. m/0/1 (non-hardened)")
    p.set_defaults(fn=cmd_pubkey)
    p = sub.add_parser("request", parents=[common], help="status of a request")
    p.add_argument("--id", required=True)
    p.set_defaults(fn=cmd_request)
    p = sub.add_parser("status", parents=[common], help="nodes as the coordinator sees them")
    p.set_defaults(fn=cmd_status)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    args.json = getattr(args, "json", False)
    try:
        if getattr(args, "path", None):
            to_path(args.path)
        if args.cluster:
            client = MpcClient.from_cluster(args.cluster, timeout=args.timeout)
        else:
            if not (args.endpoint and args.cert and args.key_file and args.ca):
                ap.error("give --cluster DIR, or --endpoint, --cert, --key and --ca")
            client = MpcClient(args.endpoint, CertPaths(args.cert, args.key_file), args.ca, timeout=args.timeout)
    except UsageError as e:
        ap.error(str(e))
    except (OSError, KeyError, ValueError) as e:
        print(f"mpc: cannot read the cluster description: {e}", file=sys.stderr)
        return 2
    try:
        with client:
            args.fn(client, args)
        return 0
    except argparse.ArgumentTypeError as e:
        ap.error(str(e))
    except MpcError as e:
        if args.json:
            print(json.dumps({"error": {"code": e.code.name, "message": e.message}}, indent=2))
        print(f"mpc: {e.code.name}: {e.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
