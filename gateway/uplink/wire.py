"""Wire format v1: topic names and the bytes of every message the gateway publishes.

The telemetry body is assembled from the store's chunks without parsing them. A chunk is
the compact JSON array of ``[device, point, ts_ms, value, quality]`` rows, exactly what the
``samples`` array of a message holds, so a message is a small JSON header followed by the
chunks' text spliced together. Only a chunk that must be cut (it is larger than a message,
or its head was already acknowledged) is split, and even that is done on the text: a row
boundary is ``],[``; when the number of those equals rows - 1 there is no other, otherwise
(a string value holding ``],[``) the chunk is parsed and re-encoded.

With ``uplink.encoding: columns+deflate`` the same rows go out as one zlib-compressed JSON
document of columns (:func:`columns_message`) on ``…/telemetry/columns-deflate``: names once
per message, key and timestamp deltas, values, one quality letter per sample.

See docs/wire-format.md and the JSON Schemas under config/wire/.
"""

from __future__ import annotations

import json
import operator
import zlib
from dataclasses import dataclass
from typing import Any

from gateway.model import Event
from gateway.safejson import finite
from gateway.store.codec import inflate

WIRE_VERSION = 1
ENCODINGS = ("json", "columns+deflate")
#: The topic level after ``telemetry`` of each encoding (a topic cannot hold ``+``).
ENCODING_TOPIC = {"json": "", "columns+deflate": "/columns-deflate"}
_QUALITY_CODE = {"good": "g", "uncertain": "u", "bad": "b"}
_SHAPE = operator.itemgetter(0, 1, 2, 4)
_COLUMN = tuple(operator.itemgetter(i) for i in range(5))  # faster than zip(*rows)
_DEFLATE_LEVEL = 6

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=str).encode
_ROW_SEP = b"],["


@dataclass(frozen=True, slots=True)
class Topics:
    base: str

    @classmethod
    def of(cls, prefix: str, gateway_id: str) -> Topics:
        return cls(f"{prefix.rstrip('/')}/{gateway_id}")

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"

    def telemetry_for(self, encoding: str) -> str:
        """The telemetry topic of ``encoding``: the receiver reads the encoding from it."""
        return self.telemetry + ENCODING_TOPIC[encoding]

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def reply(self) -> str:
        return f"{self.base}/reply"

    @property
    def commands(self) -> str:
        return f"{self.base}/cmd/+"

    def command_name(self, topic: str) -> str | None:
        prefix = f"{self.base}/cmd/"
        return topic[len(prefix):] if topic.startswith(prefix) else None


def _well_formed(rows: list[Any]) -> bool:
    """Every row is ``[str, str, int, value, quality]`` (what the columns are built from)."""
    try:
        if set(map(type, rows)) != {list} or set(map(len, rows)) != {5}:
            return False
        shapes = {(type(d), type(p), type(t), q) for d, p, t, q in map(_SHAPE, rows)}
    except TypeError:  # an unhashable quality
        return False
    return all(d is str and p is str and t is int and q in _QUALITY_CODE
               for d, p, t, q in shapes)


class RowSlice:
    """Some contiguous rows of one chunk, as the JSON text of the rows without the outer
    brackets (``[..],[..]``), ready to splice into a message."""

    __slots__ = ("items", "nbytes", "rows", "seq_first", "seq_last", "text")

    def __init__(self, seq_first: int, seq_last: int, text: bytes,
                 items: list[list[Any]] | None = None) -> None:
        self.seq_first = seq_first
        self.seq_last = seq_last
        self.text = text
        self.items = items  # the parsed rows, when the chunk was parsed (columns encoding)
        self.rows = seq_last - seq_first + 1
        self.nbytes = len(text)


class ChunkText:
    """The decompressed text of one stored chunk, cut into row slices on demand. With
    ``parse`` the rows are also parsed (for the columns encoding); a chunk that is not an
    array of ``rows`` rows of five raises ValueError here, so it is quarantined, not sent.

    Cutting works on offsets into the one text: when the chunk holds exactly ``rows - 1``
    row separators (no string value holds ``],[``), a slice's end is found with ``rfind`` and
    ``count`` and a cursor remembers where the next row starts, so cutting a chunk of any
    size into messages holds no more than its text. Only a chunk with such a string value is
    parsed and re-encoded row by row."""

    def __init__(self, seq_first: int, seq_last: int, payload: bytes, parse: bool = False,
                 plain: bool = False) -> None:
        self.seq_first = seq_first
        self.seq_last = seq_last
        text = inflate(payload)  # zlib.error on a damaged chunk (Adler-32 checked)
        # ``plain``: the store wrote it from columns and knows no string holds a separator
        # (RawTelemetryChunk.plain), so it has exactly rows - 1 of them: not counted again.
        separators = self.rows - 1 if plain else text.count(_ROW_SEP)
        if not (text.startswith(b"[[") and text.endswith(b"]]")) or (
            separators < self.rows - 1  # a string value can only add separators
        ):
            raise ValueError(f"stored chunk {seq_first}..{seq_last} is not an array of "
                             f"{self.rows} rows")
        # b"[[row],[row]]" -> b"[row],[row]"
        self.inner = text[1:-1]
        del text
        self._plain = separators == self.rows - 1  # every separator is a row boundary
        self._at = (seq_first, 0)  # a row's seq and the offset in ``inner`` where it starts
        self._parts: list[bytes] | None = None
        self.parsed: list[list[Any]] | None = None
        if parse:
            rows = json.loads(b"[" + self.inner + b"]")
            if len(rows) != self.rows or not _well_formed(rows):
                raise ValueError(f"stored chunk {seq_first}..{seq_last} is not {self.rows} "
                                 f"rows of [device, point, ts, value, quality]")
            self.parsed = rows

    @property
    def rows(self) -> int:
        return self.seq_last - self.seq_first + 1

    def take(self, first: int, max_rows: int, max_bytes: int, need_one: bool) -> RowSlice | None:
        """Rows from seq ``first`` on: at most ``max_rows`` of them and at most ``max_bytes``
        of text, except that with ``need_one`` the first row is taken whatever its size.
        None when not even one row fits."""
        if first == self.seq_first and self.rows <= max_rows and len(self.inner) <= max_bytes:
            return RowSlice(first, self.seq_last, self.inner, self.parsed)
        if not self._plain:
            return self._take_parts(first, max_rows, max_bytes, need_one)
        inner, sep = self.inner, _ROW_SEP
        start = self._offset(first)
        # By bytes: the rows whose text ends within start + max_bytes.
        if len(inner) - start <= max_bytes:
            count, stop = self.seq_last - first + 1, len(inner)
        else:
            p = inner.rfind(sep, start, start + max_bytes + 2)  # its "]" ends the last row
            count, stop = (0, start) if p < 0 else (inner.count(sep, start, p + 3), p + 1)
        if count > max_rows:  # by rows
            p = start
            for _ in range(max_rows):
                p = inner.find(sep, p) + 2  # where the next row starts
            count, stop = max_rows, p - 1
        if count == 0:
            if not need_one:
                return None
            p = inner.find(sep, start)
            count, stop = 1, (len(inner) if p < 0 else p + 1)
        self._at = (first + count, stop + 1)
        rel = first - self.seq_first
        items = None if self.parsed is None else self.parsed[rel:rel + count]
        return RowSlice(first, first + count - 1, inner[start:stop], items)

    def _offset(self, seq: int) -> int:
        """Where row ``seq`` starts in ``inner`` (from the cursor when it is at or before)."""
        row, pos = self._at if self._at[0] <= seq else (self.seq_first, 0)
        while row < seq:
            pos = self.inner.find(_ROW_SEP, pos) + 2
            row += 1
        return pos

    def _take_parts(self, first: int, max_rows: int, max_bytes: int,
                    need_one: bool) -> RowSlice | None:
        """:meth:`take` for a chunk whose string values hold ``],[``: cut the parsed rows."""
        parts = self._split()
        start = first - self.seq_first
        end = min(len(parts), start + max_rows)
        size = 0
        for i in range(start, end):
            size += len(parts[i]) + 1
            if size > max_bytes + 1 and (i > start or not need_one):
                end = i
                break
        if end <= start:
            return None
        items = None if self.parsed is None else self.parsed[start:end]
        return RowSlice(first, self.seq_first + end - 1, b",".join(parts[start:end]), items)

    def _split(self) -> list[bytes]:
        if self._parts is None:
            self._parts = _row_texts(self.inner)
            if len(self._parts) != self.rows:
                raise ValueError(
                    f"stored chunk {self.seq_first}..{self.seq_last} holds {len(self._parts)} "
                    f"rows instead of {self.rows}"
                )
        return self._parts


def _row_texts(inner: bytes) -> list[bytes]:
    """Each row's own text, as the store wrote it (its UTF-8 and its float spelling): where
    the JSON decoder finds the rows, so a ``],[`` inside a string does not cut a row."""
    text, decoder, parts, at = inner.decode(), json.JSONDecoder(), [], 0
    while at < len(text):
        _, end = decoder.raw_decode(text, at)
        parts.append(text[at:end].encode())
        at = end
        while at < len(text) and text[at] in ", \t\r\n":
            at += 1
    return parts


def _head(gateway: str, boot: int, store_id: str, seq_first: int, seq_last: int) -> str:
    return (f'{{"v":{WIRE_VERSION},"gw":{_dumps(gateway)},"store_id":{_dumps(store_id)},'
            f'"boot":{boot},"seq_first":{seq_first},"seq_last":{seq_last},')


def telemetry_overhead(gateway: str, boot: int, store_id: str) -> int:
    """The bytes of a JSON telemetry message around its rows' text, at the largest sequence
    numbers: a message is this plus the rows joined by commas."""
    return len(_head(gateway, boot, store_id, 2**63, 2**63).encode()) + len('"samples":[]}')


def telemetry_message(gateway: str, boot: int, slices: list[RowSlice],
                      store_id: str) -> bytes:
    """One telemetry message holding the contiguous ``slices`` of store ``store_id``."""
    head = _head(gateway, boot, store_id, slices[0].seq_first, slices[-1].seq_last)
    return b"".join(((head + '"samples":[').encode(), b",".join(s.text for s in slices), b"]}"))


def columns_message(gateway: str, boot: int, store_id: str, seq_first: int,
                    rows: list[list[Any]]) -> bytes:
    """The ``columns+deflate`` message of ``rows`` (``[device, point, ts, value, quality]``,
    the first with sequence number ``seq_first``): a zlib stream of the JSON document
    ``{v, gw, store_id, boot, seq_first, seq_last, enc, keys, k, ts, val, q}`` where ``keys``
    lists each device once with its points (``[[device, [point, ...]], ...]``), ``k`` and
    ``ts`` are the differences of each sample's key index (into ``keys`` flattened) and
    timestamp from the previous sample's (the first from 0), ``val`` the values, and ``q`` a
    letter per sample (``g``, ``u``, ``b``). See docs/wire-format.md for a decoder."""
    devices, points, ts, values, quality = (list(map(get, rows)) for get in _COLUMN)
    seen: dict[tuple[str, str], int] = {}
    add = seen.setdefault
    index = [add(key, len(seen)) for key in zip(devices, points, strict=True)]
    grouped: dict[str, list[str]] = {}  # device -> its points, in order of first appearance
    for device, point in seen:
        grouped.setdefault(device, []).append(point)
    if len(grouped) > 1 and list(seen) != [(d, p) for d, ps in grouped.items() for p in ps]:
        # A device came back after another: renumber to the device-grouped order.
        order = {(d, p): i for i, (d, p) in enumerate((d, p) for d, ps in grouped.items()
                                                        for p in ps)}
        renumber = [order[key] for key in seen]
        index = [renumber[i] for i in index]
    head = _head(gateway, boot, store_id, seq_first, seq_first + len(rows) - 1)
    body = _dumps({"enc": "columns", "keys": list(grouped.items()),
                   "k": _deltas(index), "ts": _deltas(ts), "val": values,
                   "q": "".join(map(_QUALITY_CODE.__getitem__, quality))})
    return zlib.compress((head + body[1:]).encode(), _DEFLATE_LEVEL)


def _deltas(numbers: list[int]) -> list[int]:
    """Each number minus the one before it (the first minus 0)."""
    return list(map(operator.sub, numbers, [0, *numbers[:-1]]))


def event_message(gateway: str, event: Event) -> bytes:
    return _dumps({"v": WIRE_VERSION, "gw": gateway, **event.to_wire()}).encode()


def status_message(
    gateway: str, state: str, *, version: str, boot: int, started_ms: int, ts_ms: int,
    reason: str | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "v": WIRE_VERSION, "gw": gateway, "state": state, "version": version, "boot": boot,
        "started": started_ms, "ts": ts_ms,
    }
    if reason is not None:
        body["reason"] = reason
    return _dumps(body).encode()


def reply_message(gateway: str, request_id: str | None, command: str | None,
                  reply: dict[str, Any], ts_ms: int) -> bytes:
    body: dict[str, Any] = {"v": WIRE_VERSION, "gw": gateway, "id": request_id,
                            "command": command, "ts": ts_ms, "ok": bool(reply.get("ok"))}
    if body["ok"]:
        body["result"] = reply.get("result")
    else:
        body["error"] = reply.get("error")
    return encode_json(body)


def encode_json(body: Any) -> bytes:
    """Compact JSON; a value JSON cannot hold (NaN, an odd object) becomes a string."""
    try:
        return _dumps(body).encode()
    except ValueError:  # NaN or infinity somewhere in a result
        return _dumps(finite(body)).encode()

