"""The columns+deflate encoding: the decoder printed in docs/wire-format.md turns every
message back into the v1 JSON message, both validate against their schemas, and no message
payload exceeds uplink.max_bytes in either encoding unless it holds a single sample."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import Quality, Sample
from gateway.store.codec import encode_chunk
from gateway.store.db import read_stats
from gateway.uplink.wire import ChunkText, columns_message, telemetry_message
from tests.gateway.uplink.helpers import BASE, site
from tests.gateway.uplink.wirecheck import DOC, WireRecorder, doc_decoder, load_validators
from tests.support.app import running_app
from tests.support.mosquitto import Mosquitto

VALIDATORS = load_validators()
decode_columns = doc_decoder()

values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
)
rows = st.lists(
    st.tuples(st.sampled_from(["m-1", "pv", "ü"]), st.sampled_from(["p", "q r", "],["]),
              st.integers(0, 2**41), values, st.sampled_from(list(Quality))),
    min_size=1, max_size=60,
)


def _json_blocks(text: str) -> list[str]:
    return [b.split("```", 1)[0] for b in text.split("```json\n")[1:]]


def test_the_documented_example_decodes_to_the_documented_v1_samples() -> None:
    blocks = _json_blocks(DOC.read_text())
    v1 = json.loads(blocks[0])
    [columns] = [json.loads(b) for b in blocks if '"enc":"columns"' in b]
    decoded = decode_columns(zlib.compress(json.dumps(columns).encode()))
    assert decoded["samples"] == v1["samples"]
    assert {k: decoded[k] for k in ("gw", "boot", "seq_first", "seq_last")} == \
        {k: v1[k] for k in ("gw", "boot", "seq_first", "seq_last")}
    assert not list(VALIDATORS["telemetry-columns"].iter_errors(columns))


@settings(max_examples=150, deadline=None)
@given(rows, st.integers(1, 10**12))
def test_columns_decode_to_exactly_the_v1_message(batch: list[tuple], seq_first: int) -> None:
    samples = [Sample(*r) for r in batch]
    seq_last = seq_first + len(samples) - 1
    chunk = ChunkText(seq_first, seq_last, encode_chunk(samples), parse=True)
    part = chunk.take(seq_first, len(samples), 10**9, need_one=True)
    assert part is not None and part.items is not None
    payload = columns_message("gw-1", 7, "store-a", seq_first, part.items)
    doc = json.loads(zlib.decompress(payload))
    assert not list(VALIDATORS["telemetry-columns"].iter_errors(doc))
    decoded = decode_columns(payload)
    assert not list(VALIDATORS["telemetry"].iter_errors(decoded))
    assert decoded == json.loads(telemetry_message("gw-1", 7, [part], "store-a"))


@pytest.mark.parametrize("row", [
    b'["m","p",1,2]', b'["m","p",1.5,2,"good"]', b'["m",["p"],1,2,"good"]',
    b'["m","p",1,2,["good"]]', b'["m","p",1,2,"fine"]', b'{"m":1}',
])
def test_a_malformed_chunk_is_refused_when_parsed(row: bytes) -> None:
    bad = zlib.compress(b'[' + row + b',["m","p",1,2,"good"]]')
    with pytest.raises(ValueError, match=r"1\.\.2"):  # the forwarder quarantines it
        ChunkText(1, 2, bad, parse=True)


async def test_no_message_exceeds_max_bytes_but_a_single_big_sample(
    mosquitto: Mosquitto, tmp_path: Path, encoding: str
) -> None:
    limit = 1_024
    cfg = site(mosquitto, devices=2, interval=0.1, extra_points=20, max_bytes=limit,
               encoding=encoding, window=4)
    for device in cfg["devices"]:
        device["extra_values"] = "floats"  # compress poorly: the columns budget must adapt
    big = os.urandom(1_500).hex()  # over the limit in either encoding, even compressed
    async with (WireRecorder(mosquitto.host, mosquitto.port, BASE) as rec,
                running_app(cfg, tmp_path) as app):
        await rec.wait_for(lambda g: g.high >= 500, 15, "500 samples")
        await app.pipeline.put([Sample("big-1", "blob", 1, big)])
        await rec.wait_for(lambda g: any(r[0] == "big-1" for r in g.rows.values()), 10,
                           "the big sample")
        high = rec.got.high
        await rec.wait_for(lambda g: g.high >= high + 1_000, 20, "1000 more samples")
    got = rec.got
    over = [(size, n) for size, n in got.sizes if size > limit]
    assert over and all(n == 1 for _size, n in over), over  # only the big sample, alone
    assert len(over) == 1
    assert max(size for size, _n in got.sizes if size <= limit) > limit * 0.6  # filled
    assert not got.gaps and sorted(got.rows) == list(range(1, got.high + 1))
    rec.assert_valid()


async def test_linger_fills_messages(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = site(mosquitto, devices=2, interval=0.1, linger=1.0, encoding="columns+deflate")
    async with WireRecorder(mosquitto.host, mosquitto.port, BASE) as rec:
        async with running_app(cfg, tmp_path) as app:
            await rec.wait_for(lambda g: g.messages >= 3, 15, "three messages")
        stats = read_stats(app.store.path)
        await rec.wait_for(lambda g: g.high == stats.next_seq - 1, 5, "all rows")
    # 2 devices x 5 points every 0.1 s: about 100 samples a second. Without linger each
    # message would hold one or two batches (5 to 10 samples).
    full = [n for _size, n in rec.got.sizes[:3]]
    assert all(n >= 50 for n in full), rec.got.sizes
    assert not rec.got.gaps
    rec.assert_valid()
