"""How a chunk of samples is laid down in one telemetry row.

A chunk is the JSON array of ``[device, point, ts_ms, value, quality]`` arrays (exactly what
the wire format carries), compressed as a zlib stream (deflate, fast level). Device and point
names repeat a lot, so this takes about 6-7 bytes a sample on disk.

The JSON text is written by orjson: it was the largest single cost of the whole gateway
(about 1 µs a sample with the standard library's encoder, 0.2 µs with orjson). The text is
the same JSON: compact, the same numbers (a float as its shortest repr, possibly in another
exponent spelling: ``1e-05`` or ``0.00001``), text as UTF-8 rather than ``\\u`` escapes.
What orjson does not take (an int beyond 64 bits, a lone surrogate, a float subclass, a type
it does not know) is encoded by the standard library exactly as before, which raises on
what JSON cannot hold; NaN and infinities, which orjson would write as ``null`` with the
sample's quality unchanged, are ``null`` with quality ``bad`` in either case.

A poll that came as a :class:`~gateway.model.PollBatch` (one device, one timestamp, every
value good, the driver's ``names`` tuple) is written from its columns: the rows' text around
the values is kept per names tuple and device, and orjson writes only the values. The bytes
are exactly those the rows would give (``tests/gateway/test_store_codec.py`` compares them);
a poll whose values are not all plain numbers, or a chunk with anything unusual, takes the
rows' path for the whole chunk, as before.

A chunk of fewer than :data:`ORJSON_FROM` samples is written by the standard library (text
as ``\\u`` escapes) and compressed by zlib at level 1: orjson, once loaded, keeps about
1.9 MB resident, which is more than a small site's whole saving is worth (its idle RSS goal is
50 MB); a site that commits bigger chunks loads it with the first one, and with it ISA-L's
zlib (the ``isal`` package, where it has a wheel; zlib elsewhere), which compresses a chunk
at its level 1 about four times faster than zlib at level 1 and a little smaller. Both are
the same zlib stream format: any zlib reads either. The uplink cuts either text as it stands.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import operator
import zlib
from collections.abc import Sequence
from typing import Any

from gateway.model import Batch, PollBatch, Quality

#: From this many samples in a chunk on, orjson writes its text (see the module docstring).
ORJSON_FROM = 1_000
#: A stored chunk at least this long (compressed) is inflated by ISA-L, loaded then.
ISAL_FROM = 8_192
_orjson: Any = None  # the module, once a chunk was big enough
_Fragment: Any = None  # orjson.Fragment: text orjson copies into its output as it is
_isal: Any = None  # isal.isal_zlib (or zlib where isal is not installed), once loaded
_isal_error: tuple[type[BaseException], ...] = ()

# A batch is a list of flat tuples of scalars: it cannot hold a cycle, so the encoder need
# not track the containers it is inside (check_circular costs a dict insert and delete per
# sample; ~15 % of the encoding time in a micro benchmark on a busy machine).
_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False).encode
_OPTIONS = 0  # orjson's options, set when it is loaded
_VALUE = operator.itemgetter(3)
_TS = operator.itemgetter(2)
# device -> its fragments (see _fragments); id(names) -> (names, no "],[" in a name)
_DEVICES: dict[str, tuple[Any, Any, Any, bool]] = {}
_NAMES: dict[int, tuple[tuple[str, ...], bool]] = {}
# (device, id(names)) -> (names, the poll's flat list without values, plain): _template
_TEMPLATES: dict[tuple[str, int], tuple[tuple[str, ...], list[Any], bool]] = {}
_CACHED_MAX = 4_096
_ROW_SEP = b"],["  # between two rows; inside a string only in a name or a text value
_ROW_SEP_TEXT = "],["


def encode_chunk(batch: Batch) -> bytes:
    return encode_chunk_checked(batch)[0]


def encode_chunk_checked(batch: Batch) -> tuple[bytes, bool]:
    """The chunk, and whether its text is known to be *plain*: every ``],[`` in it is a row
    boundary (no string holds one), so the uplink may cut it without counting them first.
    Known only for a chunk written from columns whose device and point names hold no
    ``],[`` (values there are numbers); False means "count them", not "not plain"."""
    if len(batch) < ORJSON_FROM:
        return zlib.compress(_encode_std(batch), 1), False
    if _orjson is None:
        _load_orjson()
    # Samples are named tuples, which orjson does not take: plain tuples (in C). Those are one
    # tracked container per sample, alive only here: without the pause they would start a
    # collection of the whole young generation (every sample in flight) in most commits.
    collecting = gc.isenabled()
    gc.disable()
    try:
        built = _columns_text(batch)
        text, plain = built if built is not None else (_rows_text(batch), False)
    finally:
        if collecting:
            gc.enable()
    packed: bytes = _isal.compress(text, 1)
    return packed, plain


def _rows_text(batch: Batch) -> bytes:
    try:
        text: bytes = _orjson.dumps(list(map(tuple, batch)), option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: see the module's docstring
        return _encode_std(batch)
    nulls = text.count(b"null")  # None, NaN, inf; or inside a string: then look closer
    if nulls and nulls != list(map(_VALUE, batch)).count(None) and any(
            map(_non_finite, batch)):
        return _encode_std(batch)
    return text


def _columns_text(batch: Batch) -> tuple[bytes, bool] | None:
    """The text :func:`_rows_text` gives, built from the PollBatch parts' columns, and
    whether it is plain (see :func:`encode_chunk_checked`); None when the batch has none,
    or something in it is unusual (then the rows' path takes the whole chunk, whose null
    and fallback checks are per chunk).

    One orjson call writes the whole chunk from one flat list. Per poll it holds, for each
    point, an orjson Fragment (text orjson copies as it is: ``["dev"`` for the first point,
    ``"good"],["dev"`` for the next ones), the point's name, the timestamp and the value,
    and ``"good"]`` at the end; orjson puts a comma between any two items, which is exactly
    the JSON between them. A poll's part of the list is copied from its device's and names
    tuple's template (:func:`_template`: the fragments and names in place), and its
    timestamps and values go in by two slice assignments (in C). Other parts add their
    samples as plain tuples (rows)."""
    parts: list[Any] | None = getattr(batch, "parts", None)
    if not parts or _Fragment is None or PollBatch not in set(map(type, parts)):
        return None
    if sum([len(p.values) if type(p) is PollBatch else len(p) for p in parts]) != len(batch):
        return None  # (a PollBatch's length from its values: its __len__ is a Python call)
    flat: list[Any] = []
    plain = True
    for part in parts:
        if type(part) is not PollBatch:
            if any(map(_non_finite, part)):  # the rows' path marks it bad
                return None
            flat.extend(map(tuple, part))
            plain = False  # its strings were not looked at
            continue
        names, values, ts = part.names, part.values, part.ts_ms
        n = len(values)
        if not n:
            continue
        if type(ts) is not int or len(names) != n:
            return None
        try:  # numbers and booleans only, every one finite: a NaN would be null and bad
            if not math.isfinite(sum(values)):  # type: ignore[arg-type]
                return None
        except (TypeError, OverflowError):  # None, text, an int too big for a float
            return None
        found = _template(part.device, names)
        if found is None:
            return None
        template, plain_poll = found
        plain = plain and plain_poll
        at, end = len(flat), len(flat) + 4 * n
        flat += template  # the fragments and the names, in place
        flat[at + 2:end:4] = [ts] * n
        flat[at + 3:end:4] = values
    try:
        text: bytes = _orjson.dumps(flat, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError (a lone surrogate...): the rows' path decides
        return None
    return text, plain


def _template(device: str, names: tuple[str, ...]) -> tuple[list[Any], bool] | None:
    """A poll's flat list without its timestamps and values (None in their places): per
    point the fragment before it (``["dev"`` for the first, ``"good"],["dev"`` for the next
    ones), its name, the timestamp's and the value's places, then ``"good"]``; and whether
    the device and names are plain (see :func:`encode_chunk_checked`). Kept per device and
    names tuple (4 pointers a point), so a poll copies it instead of building it; None when
    orjson cannot write the device."""
    key = (device, id(names))
    found = _TEMPLATES.get(key)
    if found is not None and found[0] is names:
        return found[1], found[2]
    frags = _fragments(device)
    if frags is None:
        return None
    n = len(names)
    template: list[Any] = [frags[1]] * (4 * n + 1)  # "good"],["dev" between two rows
    template[0] = frags[0]  # ["dev"
    template[1:4 * n:4] = names
    template[2:4 * n:4] = [None] * n
    template[3:4 * n:4] = [None] * n
    template[4 * n] = frags[2]  # "good"]
    plain = frags[3] and _plain_names(names)
    if len(_TEMPLATES) >= _CACHED_MAX:
        _TEMPLATES.clear()
    _TEMPLATES[key] = (names, template, plain)
    return template, plain


def _fragments(device: str) -> tuple[Any, Any, Any, bool] | None:
    """A device's ``["dev"``, ``"good"],["dev"`` and ``"good"]`` as orjson Fragments, and
    whether the device's text holds no ``],[``; None when orjson cannot write the device
    (the rows' path then takes the chunk)."""
    found = _DEVICES.get(device)
    if found is not None:
        return found
    if type(device) is not str:
        return None
    try:
        dev = _orjson.dumps(device)
    except TypeError:  # a lone surrogate: the rows' path writes it with the standard library
        return None
    good = _orjson.dumps(Quality.GOOD) + b"]"
    found = (_Fragment(b"[" + dev), _Fragment(good + b",[" + dev), _Fragment(good),
             _ROW_SEP not in dev)
    if len(_DEVICES) >= _CACHED_MAX:
        _DEVICES.clear()
    _DEVICES[device] = found
    return found


def _plain_names(names: tuple[str, ...]) -> bool:
    """No name of a poll's names tuple holds ``],[`` (kept per tuple: a tuple the driver
    keeps is looked at once)."""
    found = _NAMES.get(id(names))
    if found is not None and found[0] is names:
        return found[1]
    plain = set(map(type, names)) == {str} and not any(_ROW_SEP_TEXT in name
                                                        for name in names)
    if len(_NAMES) >= _CACHED_MAX:
        _NAMES.clear()
    _NAMES[id(names)] = (names, plain)
    return plain


def ts_range(batch: Batch) -> tuple[int, int]:
    """The first and last timestamp of a batch (from a PollBatch part's one timestamp)."""
    parts: list[Any] | None = getattr(batch, "parts", None)
    if not parts:
        return min(map(_TS, batch)), max(map(_TS, batch))  # in C
    lows, highs = [], []
    for part in parts:
        if type(part) is PollBatch:
            if part.values:
                lows.append(part.ts_ms)
                highs.append(part.ts_ms)
        elif part:
            lows.append(min(map(_TS, part)))
            highs.append(max(map(_TS, part)))
    return min(lows), max(highs)


def _load_orjson() -> None:
    global _orjson, _OPTIONS, _Fragment
    import orjson

    # Dataclasses and datetimes are not sample values: let them fail as the standard library
    # does.
    _OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
    _orjson = orjson
    _Fragment = getattr(orjson, "Fragment", None)  # orjson 3.9.?: older ones take the rows
    _load_isal()


def _load_isal() -> None:
    global _isal, _isal_error
    module: Any = zlib  # no isal wheel for this machine: zlib does the same, slower
    errors: tuple[type[BaseException], ...] = ()
    with contextlib.suppress(ImportError):
        from isal import isal_zlib

        error: Any = isal_zlib.error  # typed as an instance in its stubs; it is a class
        module, errors = isal_zlib, (error,)
    _isal, _isal_error = module, errors


def inflate(payload: bytes) -> bytes:
    """A stored chunk's text; zlib.error when it is damaged (the Adler-32 is checked)."""
    if len(payload) < ISAL_FROM:
        return zlib.decompress(payload)
    if _isal is None:
        _load_isal()
    try:
        text: bytes = _isal.decompress(payload)
        return text
    except _isal_error as err:
        raise zlib.error(str(err)) from err


def _encode_std(batch: Batch) -> bytes:
    if not isinstance(batch, (list, tuple)):  # a Committed or a PollBatch: json wants a list
        batch = list(batch)
    try:
        text = _dumps(batch)
    except ValueError:
        # NaN/Inf are not JSON. Drivers should mark such values bad; encode them as null here
        # so a single bad float never blocks the buffer.
        text = _dumps([_finite(s) for s in batch])
    return text.encode()


def decode_chunk(payload: bytes) -> list[list[Any]]:
    rows: list[list[Any]] = json.loads(inflate(payload))
    return rows


def _non_finite(sample: Sequence[Any]) -> bool:
    value = sample[3]
    return isinstance(value, float) and not math.isfinite(value)


def _finite(sample: Sequence[Any]) -> Sequence[Any]:
    if _non_finite(sample):
        return (*sample[:3], None, "bad")
    return sample
