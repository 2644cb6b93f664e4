"""The store's chunk codec: orjson's text is the same JSON the standard library wrote (the
encoder before it, kept below as the reference), and what orjson does not take is encoded as
before: big ints, lone surrogates, NaN and infinities (null and bad), unknown types (refused).
Every test here but the last has orjson write chunks of any size; the last checks the size
from which it does, and that a small site never loads it."""

from __future__ import annotations

import decimal
import json
import math
import subprocess
import sys
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import Quality, Sample
from gateway.store import codec
from gateway.store.codec import decode_chunk, encode_chunk
from gateway.uplink.wire import ChunkText

_reference_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


@pytest.fixture(autouse=True)
def _orjson_for_every_chunk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
                            ) -> None:
    if request.node.name != "test_small_chunks_leave_orjson_unloaded":
        monkeypatch.setattr(codec, "ORJSON_FROM", 1)


def reference(batch: list[Sample]) -> Any:
    """What the chunk held before orjson: the standard library's text, parsed."""
    try:
        text = _reference_dumps(batch)
    except ValueError:
        text = _reference_dumps([
            (*s[:3], None, "bad") if isinstance(s[3], float) and not math.isfinite(s[3])
            else s for s in batch])
    return json.loads(text)


def text_of(batch: list[Sample]) -> bytes:
    return zlib.decompress(encode_chunk(batch))


VALUES = st.one_of(
    st.none(), st.booleans(),
    st.integers(-2**63, 2**64 - 1), st.integers(),  # beyond 64 bits: the standard library
    st.floats(), st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12),
    st.text(st.characters(codec=None, categories=["Cs", "Lo", "So"]), max_size=4),
    st.sampled_from(["],[", "null", "é\u2028\"\\"]),
)
SAMPLES = st.builds(Sample, st.sampled_from(["m000", "pv-1", "Wärme"]),
                    st.text(min_size=1, max_size=8), st.integers(0, 2**45), VALUES,
                    st.sampled_from(list(Quality)))


@settings(deadline=None, max_examples=400)
@given(st.lists(SAMPLES, min_size=1, max_size=40))
def test_the_same_json_as_the_standard_library(batch: list[Sample]) -> None:
    got = json.loads(text_of(batch))
    want = reference(batch)
    assert got == want  # NaN became None, so == holds
    for row_got, row_want in zip(got, want, strict=True):
        assert [type(v) for v in row_got] == [type(v) for v in row_want]
    assert decode_chunk(encode_chunk(batch)) == want
    # the uplink splices the text: it must be the array of rows it expects
    chunk = ChunkText(1, len(batch), encode_chunk(batch))
    rows = [json.loads(b"[" + chunk.take(i, 1, 10**6, True).text + b"]")[0]  # type: ignore[union-attr]
            for i in range(1, len(batch) + 1)]
    assert rows == want


def test_the_usual_rows_are_compact_and_unchanged() -> None:
    batch = [Sample("m000", "r000", 1718000000000, 230.1),
             Sample("m000", "r001", 1718000000000, 7),
             Sample("m000", "ok", 1718000000000, True, Quality.UNCERTAIN),
             Sample("pv-1", "power_w", 1718000000000, None, Quality.BAD)]
    assert text_of(batch) == _reference_dumps(batch).encode() == (
        b'[["m000","r000",1718000000000,230.1,"good"],["m000","r001",1718000000000,7,"good"],'
        b'["m000","ok",1718000000000,true,"uncertain"],'
        b'["pv-1","power_w",1718000000000,null,"bad"]]')


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_value_is_null_and_bad(value: float) -> None:
    batch = [Sample("m", "a", 1, 1.5), Sample("m", "b", 1, value), Sample("m", "c", 1, None)]
    assert json.loads(text_of(batch)) == [["m", "a", 1, 1.5, "good"], ["m", "b", 1, None, "bad"],
                                          ["m", "c", 1, None, "good"]]


def test_what_orjson_refuses_is_encoded_as_before() -> None:
    big = [Sample("m", "e", 1, 2**70), Sample("m", "s", 1, "\ud800")]
    assert text_of(big) == _reference_dumps(big).encode()
    assert json.loads(text_of(big)) == [["m", "e", 1, 2**70, "good"],
                                        ["m", "s", 1, "\ud800", "good"]]
    utf8 = [Sample("Wärme", "t", 1, "é")]
    assert text_of(utf8) == '[["Wärme","t",1,"é","good"]]'.encode()  # UTF-8, not \\u escapes
    for bad in (decimal.Decimal("1.5"), {1, 2}, b"raw"):
        with pytest.raises(TypeError, match="not JSON serializable"):
            encode_chunk([Sample("m", "x", 1, bad)])  # type: ignore[arg-type]


def test_small_chunks_leave_orjson_unloaded() -> None:
    """A small site's chunks are the standard library's text, and orjson (about 1.9 MB
    resident) is loaded with the first chunk of ORJSON_FROM samples."""
    code = (
        "import sys, json, zlib\n"
        "from gateway.model import Sample\n"
        "from gateway.store.codec import ORJSON_FROM, encode_chunk\n"
        "small = [Sample('Wärme', f'p{i}', 1, i / 3) for i in range(ORJSON_FROM - 1)]\n"
        "text = zlib.decompress(encode_chunk(small))\n"
        "std = json.dumps(small, separators=(',', ':')).encode()\n"
        "print(text == std, 'orjson' in sys.modules)\n"
        "encode_chunk(small + small[:1])\n"
        "print('orjson' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "False", "True"]


def test_encoding_a_big_chunk_starts_no_collection_and_keeps_the_collector_as_it_was() -> None:
    """The plain tuples made for orjson (one tracked container per sample) do not start a
    collection of every sample in flight; the collector is left as it was."""
    import gc

    batch = [Sample("m", f"p{i}", 1_000 + i, i * 0.1) for i in range(3_000)]
    seen: list[int] = []

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    threshold = gc.get_threshold()
    gc.callbacks.append(count)
    try:
        gc.set_threshold(100, 10, 10)  # 3,000 new tuples would start about 30 collections
        gc.collect()
        seen.clear()
        text = encode_chunk(batch)
        # Without the pause: about 30. One may come from an allocation just after it (or in
        # another thread of an earlier test), as it would anyway.
        assert len(seen) <= 1 and gc.isenabled()
        gc.disable()
        assert encode_chunk(batch) == text and not gc.isenabled()
    finally:
        gc.enable()
        gc.callbacks.remove(count)
        gc.set_threshold(*threshold)
    assert decode_chunk(text) == json.loads(json.dumps(batch))
