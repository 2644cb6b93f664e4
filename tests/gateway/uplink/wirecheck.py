"""A subscriber that validates every message the gateway publishes against the JSON Schemas
in config/wire/ and checks the telemetry sequence: rows in order, no gaps, repeats dropped.
Telemetry in the columns+deflate encoding is validated, then decoded with the decoder printed
in docs/wire-format.md, and the decoded message validated as v1 JSON."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema

ROOT = Path(__file__).resolve().parents[3]
SCHEMA_DIR = ROOT / "config" / "wire"
KINDS = ("telemetry", "events", "status", "reply")
COLUMNS_TOPIC = "telemetry/columns-deflate"
DOC = ROOT / "docs" / "wire-format.md"
DECODER_MARK = "<!-- decoder: tested by tests/gateway/uplink/test_columns.py -->"


def doc_decoder() -> Callable[[bytes], dict[str, Any]]:
    """``decode_columns`` exactly as docs/wire-format.md prints it."""
    text = DOC.read_text()
    assert DECODER_MARK in text, "the decoder is gone from docs/wire-format.md"
    block = text.split(DECODER_MARK, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(block, str(DOC), "exec"), namespace)
    decode: Callable[[bytes], dict[str, Any]] = namespace["decode_columns"]
    return decode


def load_validators() -> dict[str, jsonschema.protocols.Validator]:
    out: dict[str, jsonschema.protocols.Validator] = {}
    for kind in (*KINDS, "command", "telemetry-columns"):
        schema = json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text())
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        out[kind] = cls(schema)
    return out


@dataclass
class Received:
    high: int = 0  # highest telemetry seq accepted
    rows: dict[int, list[Any]] = field(default_factory=dict)
    duplicates: list[int] = field(default_factory=list)  # rows the gateway sent again
    broker_duplicates: list[int] = field(default_factory=list)  # redelivered (DUP flag)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    messages: int = 0
    connects: int = 0  # more than 1: the recorder itself reconnected (it may have missed some)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # telemetry (bytes, samples)
    telemetry_topics: set[str] = field(default_factory=set)
    status: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)


class _Client(aiomqtt.Client):
    """Remembers the DUP flag, which aiomqtt's Message drops: a message the *broker*
    redelivers to us after a restart is not a message the gateway sent twice."""

    dup_mids: set[int]

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if message.dup:
            self.dup_mids.add(message.mid)
        super()._on_message(client, userdata, message)


class WireRecorder:
    """Subscribes to <prefix>/<gw>/{telemetry,events,status,reply} with a persistent session
    (so a broker restart loses nothing queued for it) and records what arrives."""

    def __init__(self, host: str, port: int, base: str, client_id: str = "wire-recorder",
                 keep_rows: bool = True) -> None:
        self.host, self.port, self.base = host, port, base
        self.client_id = client_id
        self.keep_rows = keep_rows
        self.got = Received()
        self.validators = load_validators()
        self.decode_columns = doc_decoder()
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> WireRecorder:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.connected.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                client = _Client(self.host, self.port, identifier=self.client_id,
                                 clean_session=False, keepalive=5)
                client.dup_mids = set()
                async with client:
                    for kind in (*KINDS, COLUMNS_TOPIC):
                        await client.subscribe(f"{self.base}/{kind}", qos=1)
                    self.got.connects += 1
                    self.connected.set()
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        dup = message.mid in client.dup_mids
                        client.dup_mids.discard(message.mid)
                        try:
                            self.on_message(str(message.topic), message.payload,
                                            bool(message.retain), dup)
                        except Exception as err:  # recorded, so the test fails loudly
                            self.got.errors.append(f"{message.topic}: {err!r}")
            except aiomqtt.MqttError:
                self.connected.clear()
                await asyncio.sleep(0.1)  # poll: reconnect until the broker is back

    def on_message(self, topic: str, payload: bytes, retain: bool = False,
                   dup: bool = False) -> None:
        kind = topic.rsplit("/", 1)[-1]
        try:
            if topic.endswith("/" + COLUMNS_TOPIC):
                kind = "telemetry"
                doc = json.loads(zlib.decompress(payload))
                for error in self.validators["telemetry-columns"].iter_errors(doc):
                    self.got.errors.append(f"{topic}: {error.message} at "
                                           f"{list(error.absolute_path)}")
                body = self.decode_columns(payload)
            else:
                body = json.loads(payload)
        except (ValueError, zlib.error) as err:
            self.got.errors.append(f"{topic}: not JSON (or not zlib): {err}")
            return
        validator = self.validators.get(kind)
        if validator is None:
            self.got.other.append(topic)
            return
        for error in validator.iter_errors(body):
            self.got.errors.append(f"{topic}: {error.message} at {list(error.absolute_path)}")
        if kind == "telemetry":
            self.got.telemetry_topics.add(topic)
            self.got.sizes.append((len(payload), body["seq_last"] - body["seq_first"] + 1))
            self._telemetry(body, dup)
        elif kind == "status":
            self.got.status.append({**body, "_retain": retain})
        elif kind == "events":
            self.got.events.append({**body, "_high": self.got.high})
        else:
            self.got.replies.append(body)
        self._changed.set()

    def _telemetry(self, body: dict[str, Any], dup: bool) -> None:
        got = self.got
        got.messages += 1
        first, last, samples = body["seq_first"], body["seq_last"], body["samples"]
        if last - first + 1 != len(samples):
            got.errors.append(f"telemetry {first}..{last} holds {len(samples)} samples")
            return
        for i, row in enumerate(samples):
            seq = first + i
            if seq <= got.high:
                (got.broker_duplicates if dup else got.duplicates).append(seq)
                continue
            if seq != got.high + 1:
                got.gaps.append((got.high + 1, seq - 1))
            got.high = seq
            if self.keep_rows:
                got.rows[seq] = row

    async def wait_for(self, predicate: Callable[[Received], bool], timeout: float,
                       what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.got):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; "
                                     f"high={self.got.high}, errors={self.got.errors[:3]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.2))

    def assert_valid(self) -> None:
        assert not self.got.errors, self.got.errors[:10]
        assert not self.got.other, self.got.other[:10]
