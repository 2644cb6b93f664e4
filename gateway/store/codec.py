"""How a chunk of samples is laid down in one telemetry row.

A chunk is the JSON array of ``[device, point, ts_ms, value, quality]`` arrays (exactly what
the wire format carries), compressed with zlib at level 1. Device and point names repeat a
lot, so this takes about 7 bytes a sample on disk at a cost below a microsecond a sample.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from typing import Any

from gateway.model import Batch

# A batch is a list of flat tuples of scalars: it cannot hold a cycle, so the encoder need
# not track the containers it is inside (check_circular costs a dict insert and delete per
# sample; ~15 % of the encoding time in a micro benchmark on a busy machine).
_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False).encode


def encode_chunk(batch: Batch) -> bytes:
    try:
        text = _dumps(batch)
    except ValueError:
        # NaN/Inf are not JSON. Drivers should mark such values bad; encode them as null here
        # so a single bad float never blocks the buffer.
        text = _dumps([_finite(s) for s in batch])
    return zlib.compress(text.encode(), 1)


def decode_chunk(payload: bytes) -> list[list[Any]]:
    rows: list[list[Any]] = json.loads(zlib.decompress(payload))
    return rows


def _finite(sample: Sequence[Any]) -> Sequence[Any]:
    value = sample[3]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return (*sample[:3], None, "bad")
    return sample
