"""How a chunk of samples is laid down in one telemetry row.

A chunk is the JSON array of ``[device, point, ts_ms, value, quality]`` arrays (exactly what
the wire format carries), compressed with zlib at level 1. Device and point names repeat a
lot, so this takes about 7 bytes a sample on disk.

The JSON text is written by orjson: it was the largest single cost of the whole gateway
(about 1 µs a sample with the standard library's encoder, 0.2 µs with orjson). The text is
the same JSON: compact, the same numbers (a float as its shortest repr, possibly in another
exponent spelling: ``1e-05`` or ``0.00001``), text as UTF-8 rather than ``\\u`` escapes.
What orjson does not take (an int beyond 64 bits, a lone surrogate, a float subclass, a type
it does not know) is encoded by the standard library exactly as before, which raises on
what JSON cannot hold; NaN and infinities, which orjson would write as ``null`` with the
sample's quality unchanged, are ``null`` with quality ``bad`` in either case.

A chunk of fewer than :data:`ORJSON_FROM` samples is written by the standard library (text
as ``\\u`` escapes): orjson, once loaded, keeps about 1.9 MB resident, which is more than a
small site's whole saving is worth (its idle RSS goal is 50 MB); a site that commits bigger
chunks loads it with the first one. The uplink cuts either text as it stands.
"""

from __future__ import annotations

import gc
import json
import math
import operator
import zlib
from collections.abc import Sequence
from typing import Any

from gateway.model import Batch

#: From this many samples in a chunk on, orjson writes its text (see the module docstring).
ORJSON_FROM = 1_000
_orjson: Any = None  # the module, once a chunk was big enough

# A batch is a list of flat tuples of scalars: it cannot hold a cycle, so the encoder need
# not track the containers it is inside (check_circular costs a dict insert and delete per
# sample; ~15 % of the encoding time in a micro benchmark on a busy machine).
_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False).encode
_OPTIONS = 0  # orjson's options, set when it is loaded
_VALUE = operator.itemgetter(3)


def encode_chunk(batch: Batch) -> bytes:
    if len(batch) < ORJSON_FROM:
        return zlib.compress(_encode_std(batch), 1)
    if _orjson is None:
        _load_orjson()
    # Samples are named tuples, which orjson does not take: plain tuples (in C). Those are one
    # tracked container per sample, alive only here: without the pause they would start a
    # collection of the whole young generation (every sample in flight) in most commits.
    collecting = gc.isenabled()
    gc.disable()
    try:
        text = _orjson.dumps(list(map(tuple, batch)), option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: see the module's docstring
        text = _encode_std(batch)
    else:
        nulls = text.count(b"null")  # None, NaN, inf; or inside a string: then look closer
        if nulls and nulls != list(map(_VALUE, batch)).count(None) and any(
                map(_non_finite, batch)):
            text = _encode_std(batch)
    finally:
        if collecting:
            gc.enable()
    return zlib.compress(text, 1)


def _load_orjson() -> None:
    global _orjson, _OPTIONS
    import orjson

    # Dataclasses and datetimes are not sample values: let them fail as the standard library
    # does.
    _OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
    _orjson = orjson


def _encode_std(batch: Batch) -> bytes:
    try:
        text = _dumps(batch)
    except ValueError:
        # NaN/Inf are not JSON. Drivers should mark such values bad; encode them as null here
        # so a single bad float never blocks the buffer.
        text = _dumps([_finite(s) for s in batch])
    return text.encode()


def decode_chunk(payload: bytes) -> list[list[Any]]:
    rows: list[list[Any]] = json.loads(zlib.decompress(payload))
    return rows


def _non_finite(sample: Sequence[Any]) -> bool:
    value = sample[3]
    return isinstance(value, float) and not math.isfinite(value)


def _finite(sample: Sequence[Any]) -> Sequence[Any]:
    if _non_finite(sample):
        return (*sample[:3], None, "bad")
    return sample
