"""Issue 10 item 9: numbers and derivation paths typed as text are ASCII digits only.

``int()`` reads full-width and other scripts' digits, ``_``, surrounding whitespace and a sign,
so ``m/\uff11\uff12`` (full-width 12) used to be read as ``m/12``. One rule now: governance.digits.parse_uint for any
number typed as text, and the same rule (crypto_core.bip32.INDEX_RE) for path indices, in the
SDK's to_path (what the CLI's --path and --expect-path go through), in stored audit text and in
configuration endpoints.
"""

from __future__ import annotations

import grpc
import pytest

from crypto_core import bip32
from crypto_core.errors import UsageError
from governance.digits import DECIMAL_RE, parse_uint
from governance.errors import GovernanceError
from mpcnet.client import MpcError, to_path
from mpcnet.common.config import ConfigError, Fields
from mpcnet.common.govwire import audit_entries

# the issue's inputs first, then siblings: other scripts' digits, superscripts, signs, spaces,
# separators, empty components, other bases, overflow
HOSTILE_INDICES = [
    "\uff11\uff12",  # full-width 12 (the example)
    "1_0", " 1", "+1", "0x1",
    "1 ", "1\n", "\t1", "-1", "-0", "\u0663", "\u096a", "\u00b2", "\u2081", "1e3", "1.0", "0b1", "0o1",
    "", "\u00a01", "1\u200b", "\u202e1", "\U0001d7d9",  # NBSP, zero-width space, bidi override, math bold 1
    "4294967296", "99999999999",
]


@pytest.mark.parametrize("index", HOSTILE_INDICES)
def test_a_path_index_is_ascii_digits_only(index: str) -> None:
    for parse in (bip32.parse_path, to_path):
        with pytest.raises(UsageError, match=r"derivation_path(\[0\])?:"):
            parse(f"m/{index}")
        with pytest.raises(UsageError, match=r"derivation_path\[1\]:"):
            parse(f"m/0/{index}")
        with pytest.raises(GovernanceError, match="^x: must be "):
            parse_uint(index, "x", hi=2**32 - 1)


@pytest.mark.parametrize("text", ["m/0'", "m/0h", "m/0H", "m/1/44'/0", "0h"])
def test_a_hardened_marker_says_why_a_threshold_key_cannot_derive_it(text: str) -> None:
    with pytest.raises(UsageError, match="hardened .* needs the private key"):
        bip32.parse_path(text)
    with pytest.raises(MpcError, match="hardened .* needs the private key") as e:  # the SDK: also an MpcError
        to_path(text)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and isinstance(e.value, UsageError)


@pytest.mark.parametrize("text", ["m/2147483648", "m/4294967295"])
def test_an_index_in_the_hardened_range_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match="hardened index"):
        to_path(text)


@pytest.mark.parametrize("text", ["m/", "m//1", "/1", "m/1/", "mm/1", " m/1", "m/1 ", "m\n", "n/1", 5, b"m/1"])
def test_a_malformed_path_is_refused(text: object) -> None:
    with pytest.raises(UsageError, match="derivation_path"):
        to_path(text)  # type: ignore[arg-type]


def test_a_path_as_indices_is_checked_too() -> None:
    for bad in ([True], [2**31], [-1], [1.0], ["1"], [0] * 256):
        with pytest.raises(UsageError, match="derivation_path"):
            to_path(bad)  # type: ignore[arg-type]
    assert to_path([0, 2**31 - 1]) == (0, 2**31 - 1)


def test_valid_paths_and_numbers() -> None:
    assert to_path("m/0/1/2147483647") == (0, 1, 2**31 - 1)
    assert to_path("0/1") == (0, 1) and to_path("M/7") == (7,)
    assert to_path("m") == to_path("") == to_path(None) == ()
    assert to_path("m/007") == (7,)
    assert to_path("m" + "/1" * 255) == (1,) * 255
    with pytest.raises(UsageError, match="deeper"):
        to_path("m" + "/1" * 256)
    with pytest.raises(UsageError, match="longer than"):
        to_path("m/" + "1" * 5000)
    assert parse_uint("0", "n") == 0 and parse_uint("4294967295", "n", hi=2**32 - 1) == 2**32 - 1
    with pytest.raises(GovernanceError, match="must be 1..10, got 11"):
        parse_uint("11", "n", 1, 10)


def test_an_error_quotes_a_short_escaped_prefix() -> None:
    with pytest.raises(UsageError) as e:
        to_path("m/" + "\x1b[8m" * 1000)
    assert "\x1b" not in str(e.value) and len(str(e.value)) < 200
    with pytest.raises(GovernanceError) as g:
        parse_uint("\x1b" * 100_000, "limit")
    assert "\x1b" not in str(g.value) and len(str(g.value)) < 300


def test_the_path_rule_and_the_number_rule_agree() -> None:
    samples = [*HOSTILE_INDICES, "0", "7", "007", "2147483647", "123456789", "1234567890"]
    for s in samples:
        if len(s) <= 10:
            assert (bip32.INDEX_RE.fullmatch(s) is None) == (DECIMAL_RE.fullmatch(s) is None), repr(s)


def test_stored_audit_text_is_read_as_a_number_only_when_it_is_ascii_digits() -> None:
    def seq(v: object) -> int:
        return audit_entries([(v, 0, "a", "b", "", "ok", "{}", b"", b"", b"")])[0].seq

    assert seq("12") == 12 and seq(b"12") == 12 and seq(12) == 12 and seq("-3") == -3
    for bad in ("\uff11\uff12", "1_0", " 1", "+1", "0x1", "", "--1", "9" * 30):
        assert seq(bad) == -1, bad


@pytest.mark.parametrize("endpoint", ["localhost:\uff15\uff10\uff10\uff10", "localhost:\u0665\u0660", "localhost:1_0"])
def test_a_configured_endpoint_port_is_ascii_digits(endpoint: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        Fields({"listen": endpoint}, "cfg.json").endpoint("listen")
    assert Fields({"listen": "127.0.0.1:5000"}, "cfg.json").endpoint("listen") == "127.0.0.1:5000"
