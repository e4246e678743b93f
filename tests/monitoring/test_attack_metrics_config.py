"""Attack on the ``metrics`` config section (issue 15 review): ``"listen": "127.0.0.1:99999"``
passed the HOST:PORT pattern and then raised OverflowError out of the bind: a traceback at
start instead of the clear start error naming ``metrics.listen`` the servers print for OSError."""

from __future__ import annotations

import pytest

from mpcnet.common.config import ConfigError, Fields
from mpcnet.common.metrics import Metrics, load_metrics_settings


@pytest.mark.parametrize("listen", ["127.0.0.1:65536", "127.0.0.1:99999"])
def test_a_port_past_65535_is_a_config_error_naming_the_field(listen: str) -> None:
    with pytest.raises(ConfigError, match=r"metrics\.listen"):
        load_metrics_settings(Fields({"metrics": {"listen": listen}}, "node.json"))


@pytest.mark.parametrize("listen", ["127.0.0.1:65536", "127.0.0.1:99999"])
def test_serve_refuses_a_port_past_65535_with_an_oserror(listen: str) -> None:
    with pytest.raises(OSError, match=r"metrics\.listen: cannot bind"):
        Metrics("node").serve(listen)


def test_key_labels_must_be_a_boolean() -> None:
    for bad in ("true", 1, 0, [True]):
        with pytest.raises(ConfigError, match=r"metrics\.key_labels"):
            load_metrics_settings(Fields({"metrics": {"listen": "127.0.0.1:0", "key_labels": bad}}, "node.json"))


def test_port_65535_and_0_are_accepted() -> None:
    for listen in ("127.0.0.1:65535", "127.0.0.1:0", "[::1]:0"):
        s = load_metrics_settings(Fields({"metrics": {"listen": listen}}, "node.json"))
        assert s is not None and s.listen == listen
