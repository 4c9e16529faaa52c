"""The gateway's batch call: many queries to one replica in one HTTP request.

When every replica of a deployment already has the gateway's calls in flight, the queries that
arrive meanwhile wait in the gateway and go out together, as one ``POST /batch/transform``.
The replica answers each query exactly as it would answer it alone (its own status and JSON
body, in order), and its batching queue runs the model once for all of them. The framing is
binary so that no query body is parsed or copied on the way:

* request: per query, 1 byte kind (0 = ``/v1/transform``, 1 = ``/v2/transform``), 4 bytes
  big-endian length, the query's body;
* answer: per query, 2 bytes status, 4 bytes length, the answer's body.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

BATCH_PATH = "/batch/transform"
CONTENT_TYPE = "application/x-liveml-batch"
_QUERY = struct.Struct(">BI")
_ANSWER = struct.Struct(">HI")


def pack_queries(queries: Iterable[tuple[bool, bytes]]) -> bytes:
    """(v2, body) pairs -> one batch request body."""
    parts: list[bytes] = []
    for v2, body in queries:
        parts += (_QUERY.pack(1 if v2 else 0, len(body)), body)
    return b"".join(parts)


def unpack_queries(data: bytes) -> list[tuple[bool, bytes]]:
    """A batch request body -> (v2, body) pairs; ``ValueError`` names what is malformed."""
    return [(kind == 1, body) for kind, body in _unpack(data, _QUERY, "query", (0, 1))]


def pack_answers(answers: Iterable[tuple[int, bytes]]) -> bytes:
    """(status, body) pairs -> one batch answer body."""
    parts: list[bytes] = []
    for status, body in answers:
        parts += (_ANSWER.pack(status, len(body)), body)
    return b"".join(parts)


def unpack_answers(data: bytes, count: int) -> list[tuple[int, bytes]]:
    """A batch answer body -> its ``count`` (status, body) pairs (``ValueError`` otherwise)."""
    answers = _unpack(data, _ANSWER, "answer", None)
    if len(answers) != count:
        raise ValueError(f"{len(answers)} answers for {count} queries")
    return answers


def _unpack(data: bytes, head: struct.Struct, what: str,
            kinds: Sequence[int] | None) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    at, end = 0, len(data)
    while at < end:
        if at + head.size > end:
            raise ValueError(f"{what} {len(out) + 1}: truncated header at byte {at}")
        tag, size = head.unpack_from(data, at)
        if kinds is not None and tag not in kinds:
            raise ValueError(f"{what} {len(out) + 1}: unknown kind {tag}")
        at += head.size
        if at + size > end:
            raise ValueError(f"{what} {len(out) + 1}: {size} bytes announced, "
                             f"{end - at} left")
        out.append((tag, data[at:at + size]))
        at += size
    return out
