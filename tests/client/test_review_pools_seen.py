"""Review of issue 14 (attacker): ``decide(seen=)`` with a request object whose own request id
is not the id of the request its bytes hold (``SignRequest.request_id`` says one request, the
canonical request inside it is another). The approver must sign nothing (its approval would be
an approval of the other request, sent under the first one's id) and pin nothing."""

from __future__ import annotations

from dataclasses import replace

import grpc
import pytest

from mpcnet.client.sdk import MpcError, SignRequest
from tests.network.test_sdk_request_substitution import client, info


def test_a_seen_request_whose_id_is_not_its_requests_id_is_refused() -> None:
    c, stub = client(info("r-1"))
    other = SignRequest.from_proto(info("evil-1", digest=b"\x0e" * 32))
    relabelled = replace(other, request_id="r-1")  # the bytes (and object) of evil-1 under the name r-1
    with pytest.raises(MpcError) as e:
        c.approve("r-1", seen=relabelled)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.message.startswith("seen:"), e.value.message
    assert stub.decided == []
    c.approve("r-1", seen=SignRequest.from_proto(info("r-1")))  # nothing was pinned under r-1 by the refused one
    assert len(stub.decided) == 1
