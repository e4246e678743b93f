"""Issue 14 (client CPU): a signing request decoded once per process, not once per answer.

Every answer about a request (the submit, each decision, each change a watch brings) carries its
canonical bytes, and :meth:`mpcnet.client.sdk.SignRequest.from_proto` decoded them each time
(:meth:`governance.approval.SigningRequest.from_bytes`, about 35 us on the benchmark machine;
three times per signature of a :class:`~mpcnet.client.sdk.SigningTeam`). The decode is a pure
function of the bytes (strict: it refuses anything but the canonical encoding) and its result is
immutable (a frozen dataclass of bytes, str, int and a tuple), so the same bytes give an equal
object: :func:`decode_request` remembers successful decodes keyed by the exact bytes (the newest
:data:`MAX_REMEMBERED`, process-wide, under a lock). A failure is not remembered: the same bytes
are decoded, and refused, again. Nothing the client checks about a request is skipped: which
request an answer is for, the pin of its bytes per id and every approval check run on the object
as before.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from governance.approval import SigningRequest

MAX_REMEMBERED = 4096
"""Decoded requests kept; the least recently used goes first."""

MAX_REMEMBERED_BYTES = 2048
"""Only requests whose canonical bytes are at most this long are remembered (a usual request is a
few hundred bytes; a long description or a deep path could make a decoded request take ~25 KiB,
so the memo stays under about 4096 x (2 KiB + the decoded object) however requests look); longer
ones are decoded each time, as before."""

_lock = threading.Lock()
_decoded: OrderedDict[bytes, SigningRequest] = OrderedDict()


def decode_request(data: bytes) -> SigningRequest:
    """:meth:`SigningRequest.from_bytes` of ``data``, remembered; raises
    :class:`~governance.errors.GovernanceError` as it does (and then remembers nothing)."""
    key = bytes(data)
    with _lock:
        hit = _decoded.get(key)
        if hit is not None:
            _decoded.move_to_end(key)
            return hit
    out = SigningRequest.from_bytes(key)
    if len(key) > MAX_REMEMBERED_BYTES:
        return out
    with _lock:
        _decoded[key] = out
        while len(_decoded) > MAX_REMEMBERED:
            _decoded.popitem(last=False)
    return out


def forget() -> None:
    """Drop every remembered request (tests)."""
    with _lock:
        _decoded.clear()


__all__ = ["MAX_REMEMBERED", "MAX_REMEMBERED_BYTES", "decode_request", "forget"]
