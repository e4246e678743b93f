"""``mpc-node init`` and ``mpc-node join``: a node's side of enrolment (README "Deploying").

    mpc-node init --dir DIR --name NAME --endpoint HOST:PORT [--listen ADDR:PORT]
        [--pkcs11-module SO --pkcs11-token LABEL (--pkcs11-pin-file F | --pkcs11-pin-env VAR) [--identity-in-token]]
        [--scrypt-n N]
    mpc-node join --dir DIR --genesis FILE --cert FILE --ca FILE [--expect-digest HEX] [--roster FILE]

``init`` makes the node's keys on this host (:mod:`mpcnet.common.hostenrol`) and prints its
request's fingerprint; ``join`` writes ``DIR/config.json`` once the admins signed the genesis.
"""

from __future__ import annotations

from pathlib import Path

import click

from mpc_node.config import load_node_config
from mpcnet.common.cliutil import Failed, PathArg, UInt
from mpcnet.common.enrolment import EnrolmentError
from mpcnet.common.hostenrol import (
    CA_FILE,
    KEYSTORE_FILE,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
    digest_option,
    governance_section,
    init_host,
    plan_join,
    scrypt_option,
    write_join,
)
from mpcnet.common.keystore import MAX_SCRYPT_N, MIN_SCRYPT_N, SCRYPT_N
from mpcnet.common.protection import DEFAULT_IDENTITY_KEY_LABEL, DEFAULT_STORAGE_KEY_LABEL, KeyProtection, Pkcs11Settings
from mpcnet.common.rosterfile import roster_line


def pkcs11_protection(
    module: Path | None, token: str | None, pin_file: Path | None, pin_env: str | None, identity_in_token: bool,
    storage_label: str = DEFAULT_STORAGE_KEY_LABEL, identity_label: str = DEFAULT_IDENTITY_KEY_LABEL,
) -> KeyProtection | None:
    """The ``--pkcs11-*`` options as a KeyProtection (None: passphrase); click.UsageError naming
    the option for an incomplete set."""
    if module is None and token is None and pin_file is None and pin_env is None and not identity_in_token:
        return None
    if module is None or token is None:
        raise click.UsageError("--pkcs11-module and --pkcs11-token go together")
    if (pin_file is None) == (pin_env is None):
        raise click.UsageError("give exactly one of --pkcs11-pin-file, --pkcs11-pin-env")
    return KeyProtection(pkcs11=Pkcs11Settings(
        module=module.resolve(), token_label=token, pin_file=pin_file.resolve() if pin_file else None, pin_env=pin_env,
        storage_key_label=storage_label, identity_key_label=identity_label if identity_in_token else None,
    ))


@click.command("init", context_settings={"help_option_names": ["-h", "--help"]},
               help="make this node's keys on this host and its enrolment request (safe to re-run)")
@click.option("--dir", "directory", type=PathArg("DIR"), required=True, help="this node's private directory")
@click.option("--name", required=True, help="the node's name (its certificate CN and roster name)")
@click.option("--endpoint", required=True, help="HOST:PORT the coordinator dials (HOST goes into the certificate)")
@click.option("--listen", default=None, help="ADDR:PORT to bind (default 0.0.0.0 and the endpoint's port)")
@click.option("--pkcs11-module", type=PathArg("FILE"), default=None, help="PKCS#11 library (.so)")
@click.option("--pkcs11-token", default=None, help="the token's label")
@click.option("--pkcs11-pin-file", type=PathArg("FILE"), default=None, help="file holding the user PIN")
@click.option("--pkcs11-pin-env", default=None, help="environment variable holding the user PIN")
@click.option("--identity-in-token", is_flag=True, help="make the Ed25519 identity key in the token (signs there)")
@click.option("--pkcs11-storage-key-label", default=DEFAULT_STORAGE_KEY_LABEL, show_default=True, help="the token's AES storage key")
@click.option("--pkcs11-identity-key-label", default=DEFAULT_IDENTITY_KEY_LABEL, show_default=True,
              help="with --identity-in-token: the token's Ed25519 key pair")
@click.option("--scrypt-n", type=UInt(MIN_SCRYPT_N, MAX_SCRYPT_N),
              default=SCRYPT_N, show_default=True, help="scrypt cost of the passphrase protection")
def init_command(
    directory: Path, name: str, endpoint: str, listen: str | None, pkcs11_module: Path | None, pkcs11_token: str | None,
    pkcs11_pin_file: Path | None, pkcs11_pin_env: str | None, identity_in_token: bool, pkcs11_storage_key_label: str,
    pkcs11_identity_key_label: str, scrypt_n: int,
) -> None:
    protection = pkcs11_protection(pkcs11_module, pkcs11_token, pkcs11_pin_file, pkcs11_pin_env, identity_in_token,
                                   pkcs11_storage_key_label, pkcs11_identity_key_label)
    listen = listen or "0.0.0.0:" + endpoint.rpartition(":")[2]
    try:
        req = init_host(directory, role="node", name=name, endpoint=endpoint, listen=listen, protection=protection,
                        scrypt_n=scrypt_option(scrypt_n), identity_in_token=identity_in_token)
    except EnrolmentError as e:
        raise Failed(str(e)) from None
    click.echo(f"enrolment request: {directory / 'enrolment-request.json'}")
    click.echo(f"fingerprint: {req.fingerprint}")


@click.command("join", context_settings={"help_option_names": ["-h", "--help"]},
               help="check the admin-signed genesis and this node's certificate, then write DIR/config.json")
@click.option("--dir", "directory", type=PathArg("DIR"), required=True,
              help="this node's private directory (the one init made)")
@click.option("--genesis", type=PathArg("FILE"), required=True, help="the admin-signed genesis (JSON)")
@click.option("--cert", type=PathArg("FILE"), required=True, help="this node's certificate (PEM)")
@click.option("--ca", type=PathArg("FILE"), required=True, help="the CA certificate (PEM)")
@click.option("--expect-digest", default=None, help="refuse a genesis whose digest differs (64 hex digits)")
@click.option("--roster", "roster", type=PathArg("FILE"), default=None,
              help="a node added after the genesis: the roster history the admins publish ('mpc roster show --history')")
def join_command(directory: Path, genesis: Path, cert: Path, ca: Path, expect_digest: str | None, roster: Path | None) -> None:
    try:
        plan = plan_join(directory, "node", genesis, cert, ca, expect_digest=digest_option(expect_digest), roster_path=roster)
        assert plan.entry is not None
        config = {
            "index": plan.entry.index, "name": plan.entry.name, "listen": plan.init.listen, "threshold": plan.genesis.threshold,
            "keystore": KEYSTORE_FILE, "store": "node.db", **plan.init.protection,
            "tls": {"cert": TLS_CERT_FILE, "key": TLS_KEY_FILE, "ca": CA_FILE},
            "scrypt_n": plan.init.scrypt_n, "audit_db": "audit.db", "log_file": "node.log",
            "governance": governance_section(plan.genesis, plan.history),
        }
        path = write_join(directory, plan, config, load_node_config)
    except EnrolmentError as e:
        raise Failed(str(e)) from None
    click.echo(f"joined as node {plan.entry.index} ({plan.entry.name}); config: {path}")
    click.echo(roster_line(plan.roster))
