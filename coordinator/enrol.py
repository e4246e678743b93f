"""``mpc-coordinator init`` and ``mpc-coordinator join`` (README "Deploying").

    mpc-coordinator init --dir DIR --name NAME --endpoint HOST:PORT [--listen ADDR:PORT] [--scrypt-n N]
    mpc-coordinator join --dir DIR --genesis FILE --cert FILE --ca FILE [--expect-digest HEX]

Like ``mpc-node init|join`` (:mod:`mpc_node.enrol`); the coordinator's keystore identity key
signs its audit log. ``join`` takes the nodes (index, name, endpoint) from the genesis roster's
active entries.
"""

from __future__ import annotations

from pathlib import Path

import click

from coordinator.config import load_coordinator_config
from governance.roster import active_entries
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
from mpcnet.common.rosterfile import roster_line


@click.command("init", context_settings={"help_option_names": ["-h", "--help"]},
               help="make the coordinator's keys on this host and its enrolment request (safe to re-run)")
@click.option("--dir", "directory", type=PathArg("DIR"), required=True,
              help="the coordinator's private directory")
@click.option("--name", default="coordinator", show_default=True, help="its certificate CN")
@click.option("--endpoint", required=True, help="HOST:PORT clients and admins dial (HOST goes into the certificate)")
@click.option("--listen", default=None, help="ADDR:PORT to bind (default 0.0.0.0 and the endpoint's port)")
@click.option("--scrypt-n", type=UInt(MIN_SCRYPT_N, MAX_SCRYPT_N),
              default=SCRYPT_N, show_default=True, help="scrypt cost of the passphrase protection")
def init_command(directory: Path, name: str, endpoint: str, listen: str | None, scrypt_n: int) -> None:
    listen = listen or "0.0.0.0:" + endpoint.rpartition(":")[2]
    try:
        req = init_host(directory, role="coordinator", name=name, endpoint=endpoint, listen=listen, scrypt_n=scrypt_option(scrypt_n))
    except EnrolmentError as e:
        raise Failed(str(e)) from None
    click.echo(f"enrolment request: {directory / 'enrolment-request.json'}")
    click.echo(f"fingerprint: {req.fingerprint}")


@click.command("join", context_settings={"help_option_names": ["-h", "--help"]},
               help="check the admin-signed genesis and the coordinator's certificate, then write DIR/config.json")
@click.option("--dir", "directory", type=PathArg("DIR"), required=True,
              help="the coordinator's private directory (the one init made)")
@click.option("--genesis", type=PathArg("FILE"), required=True, help="the admin-signed genesis (JSON)")
@click.option("--cert", type=PathArg("FILE"), required=True, help="the coordinator's certificate (PEM)")
@click.option("--ca", type=PathArg("FILE"), required=True, help="the CA certificate (PEM)")
@click.option("--expect-digest", default=None, help="refuse a genesis whose digest differs (64 hex digits)")
@click.option("--roster", "roster", type=PathArg("FILE"), default=None,
              help="after roster changes: the roster history the admins publish ('mpc roster show --history')")
def join_command(directory: Path, genesis: Path, cert: Path, ca: Path, expect_digest: str | None, roster: Path | None) -> None:
    try:
        plan = plan_join(directory, "coordinator", genesis, cert, ca, expect_digest=digest_option(expect_digest), roster_path=roster)
        config = {
            "name": plan.init.name, "listen": plan.init.listen, "threshold": plan.genesis.threshold, "db": "coordinator.db",
            "tls": {"cert": TLS_CERT_FILE, "key": TLS_KEY_FILE, "ca": CA_FILE},
            "nodes": [{"index": e.index, "name": e.name, "endpoint": e.endpoint} for e in active_entries(plan.roster)],
            "keystore": KEYSTORE_FILE, **plan.init.protection, "audit_db": "audit.db", "log_file": "coordinator.log",
            "governance": governance_section(plan.genesis, plan.history),
        }
        path = write_join(directory, plan, config, load_coordinator_config)
    except EnrolmentError as e:
        raise Failed(str(e)) from None
    click.echo(f"joined as {plan.init.name}; config: {path}")
    click.echo(roster_line(plan.roster))
