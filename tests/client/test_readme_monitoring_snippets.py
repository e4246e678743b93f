"""The non-``mpc`` lines of README's "Monitoring" by-hand block (issue 15 review), which
tests/client/test_readme_monitoring.py does not read: the SDK burst snippet is valid Python that
calls only what the SDK has and signs more than the default ``burst_min_count``; the alerts are
read from the API every Prometheus build serves (Debian's has no ``/alerts`` page); the JSON-log
``jq`` line skips lines that are not JSON."""

from __future__ import annotations

import ast
import re

from coordinator.anomaly import AnomalyConfig
from mpcnet.client import MpcClient, SigningTeam

from ..readme_commands import section

TEXT = section("## Monitoring")
BLOCKS = re.findall(r"```sh\n(.*?)```", TEXT, flags=re.S)


def _snippet() -> str:
    found = re.findall(r"<<'PY'\n(.*?)\nPY\n", "\n".join(BLOCKS), flags=re.S)
    assert len(found) == 1, found
    return str(found[0])


def test_the_burst_snippet_is_python_calling_only_what_the_sdk_has() -> None:
    tree = ast.parse(_snippet())
    called = {(n.func.value.id, n.func.attr) for n in ast.walk(tree)
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)}
    assert ("MpcClient", "from_cluster") in called and ("SigningTeam", "from_cluster") in called
    assert ("admin", "create_key") in called and ("team", "sign") in called
    assert callable(MpcClient.create_key) and callable(SigningTeam.sign)
    loops = [n for n in ast.walk(tree) if isinstance(n, ast.For)]
    assert len(loops) == 1
    count = ast.literal_eval(loops[0].iter.args[0])  # type: ignore[attr-defined]
    assert count > AnomalyConfig().burst_min_count


def test_alerts_are_read_from_the_api_and_json_logs_with_fromjson() -> None:
    lines = "\n".join(BLOCKS).splitlines()
    curls = [line for line in lines if line.startswith("curl ")]
    assert curls and all("/api/v1/alerts" in line for line in curls)
    assert "/classic/alerts" in TEXT
    assert re.search(r"jq -cR 'fromjson\? \| select\(\.request_id == \"ID\"\)' DIR/logs/\*\.log", TEXT)
