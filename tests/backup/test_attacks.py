"""An attacker's review of the backup formats and cryptography (issue 12): a coordinator that
hands nodes and officers crafted key records, targets, bundles and orders must not get a node to
back up a record that cannot be restored, an officer to send a piece anywhere unchecked, or a
node to accept a share of another key, epoch or bundle. Each test here failed before its fix."""

from __future__ import annotations

import dataclasses

import pytest

from governance.recovery import PiecePurpose
from mpcnet.common import agekeys
from mpcnet.common.backup import make_part, officer_deliveries
from mpcnet.common.bundle import BundleError

from .bundle_util import NODE_ENCRYPTION, NODE_IDENTITY, OFFICER_KEYS, ROOT, world

CEREMONY = bytes(range(16))
W = world()  # 2-of-3, committee (1, 2, 4), 3 officers, quorum 2


def test_make_part_refuses_a_key_record_with_another_label() -> None:
    """The key label is part of every refresh/reshare configuration digest: a bundle whose record
    carries another label verifies, drills and restores, but the restored share can never deal
    in the follow-up operation. A node must not sign such a record."""
    relabelled = dataclasses.replace(W.key, label="not-the-label")
    with pytest.raises(BundleError) as e:
        make_part(W.shares[1], node=1, roster_version=1, governance_root=ROOT, config_change=W.config, key=relabelled,
                  identity=NODE_IDENTITY[1], now_ms=1)
    assert e.value.field == "key.label"


@pytest.mark.parametrize("bad", [True, "1", "\x1b[2J", 1.0])
def test_officer_deliveries_refuses_a_share_index_that_is_no_int(bad: object) -> None:
    """``True == 1`` in Python: a target keyed ``True`` must not be taken for share 1, and caller
    text must not reach the error's field unescaped."""
    target = {bad: agekeys.public_key(NODE_ENCRYPTION[1])}
    with pytest.raises(BundleError) as e:
        officer_deliveries(W.bundle, OFFICER_KEYS[1], ceremony_id=CEREMONY, purpose=PiecePurpose.DRILL, targets=target)  # type: ignore[dict-item]
    assert e.value.field == "targets"
