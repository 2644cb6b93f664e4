"""The store's chunk codec and the uplink's read of a chunk, per sample, in this process.

One chunk as the site bench commits it (``--devices`` polls of ``--registers`` uint16 x 0.1
values, as :class:`gateway.model.PollBatch` parts of a :class:`gateway.model.Committed`) is
encoded and read back; each figure is the best of ``--reps`` timings, GC off, in ns per
sample, and the median of ``--runs`` such runs is printed:

- ``encode``: :func:`gateway.store.codec.encode_chunk` as the store calls it (columns path,
  ISA-L where installed); ``encode rows``: the same samples as a plain list (the rows' path);
- ``text columns`` / ``text rows``: the JSON text alone, each way (the bytes are equal);
- ``deflate``: the text compressed as the store does, and by zlib at level 1 (before);
- ``inflate``: what the uplink does first with a stored chunk, and zlib's;
- ``cut``: the uplink's :class:`gateway.uplink.wire.ChunkText`: inflate, check, and cut into
  messages of 128 KB; ``cut (known plain)``: the same for a chunk the store knows it wrote
  from columns (no separator count over the whole text first).

It also prints bytes on disk per sample for three kinds of values (the bench's, independent
values at 1-3 decimals, full floats), ISA-L against zlib level 1. It prints only; it writes no
results file.

    python bench/store_codec.py [--devices 100] [--registers 125] [--reps 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.model import Committed, PollBatch, Sample  # noqa: E402
from gateway.store import codec  # noqa: E402
from gateway.uplink.wire import ChunkText  # noqa: E402

MESSAGE_BYTES = 131_072


def chunk(devices: int, registers: int, kind: str = "bench", t: int = 1_000) -> Committed:
    names = tuple(f"r{i:03d}" for i in range(registers))
    rng = random.Random(t)
    parts: list[list[Sample]] = []
    for d in range(devices):
        if kind == "bench":  # what bench/site.py's simulators serve, scaled by the driver
            values = [round(2300 * (1 + 0.05 * math.sin(t / 7.0 + i + d))) * 0.1
                      for i in range(registers)]
        elif kind == "decimals":
            values = [round(rng.uniform(0, 1000), rng.randint(1, 3)) for _ in names]
        else:
            values = [rng.uniform(-1e6, 1e6) for _ in names]
        ts = 1_764_600_000_000 + t * 1000 + d
        parts.append(PollBatch(f"m{d:03d}", ts, names, values))
    return Committed.of(parts)


def best_ns(fn: Callable[[], Any], samples: int, reps: int) -> float:
    gc.disable()
    try:
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    finally:
        gc.enable()
    return min(times) / samples * 1e9


def cut(payload: bytes, rows: int, plain: bool = False) -> int:
    text = ChunkText(1, rows, payload, plain=plain)
    first, messages = 1, 0
    while first <= rows:
        part = text.take(first, rows, MESSAGE_BYTES, need_one=True)
        assert part is not None
        first, messages = part.seq_last + 1, messages + 1
    return messages


def one_run(batch: Committed, reps: int) -> dict[str, float]:
    n = len(batch)
    plain = list(batch)
    payload = codec.encode_chunk(batch)
    text = codec.inflate(payload)
    assert codec.encode_chunk(plain) == payload, "the columns' bytes differ from the rows'"
    assert codec._columns_text(batch) == (text, True)
    return {
        "encode": best_ns(lambda: codec.encode_chunk(batch), n, reps),
        "encode rows": best_ns(lambda: codec.encode_chunk(plain), n, reps),
        "text columns": best_ns(lambda: codec._columns_text(batch), n, reps),
        "text rows": best_ns(lambda: codec._rows_text(plain), n, reps),
        "deflate (store)": best_ns(lambda: codec._isal.compress(text, 1), n, reps),
        "deflate (zlib 1)": best_ns(lambda: zlib.compress(text, 1), n, reps),
        "inflate (store)": best_ns(lambda: codec.inflate(payload), n, reps),
        "inflate (zlib)": best_ns(lambda: zlib.decompress(payload), n, reps),
        "cut": best_ns(lambda: cut(payload, n), n, reps),
        "cut (known plain)": best_ns(lambda: cut(payload, n, plain=True), n, reps),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--registers", type=int, default=125)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    batch = chunk(args.devices, args.registers)
    codec.encode_chunk(batch)  # loads orjson and ISA-L
    print(f"{len(batch)} samples a chunk; deflate by {codec._isal.__name__}")
    runs = [one_run(batch, args.reps) for _ in range(args.runs)]
    for key in runs[0]:
        figures = [r[key] for r in runs]
        print(f"  {key:18s} {statistics.median(figures):7.0f} ns/sample   "
              f"(runs: {', '.join(f'{f:.0f}' for f in figures)})")
    print("bytes on disk per sample (store's deflate / zlib level 1):")
    for kind in ("bench", "decimals", "floats"):
        text = codec.inflate(codec.encode_chunk(chunk(args.devices, args.registers, kind)))
        n = args.devices * args.registers
        print(f"  {kind:9s} {len(codec._isal.compress(text, 1)) / n:6.2f} / "
              f"{len(zlib.compress(text, 1)) / n:6.2f}   (text {len(text) / n:.1f})")


if __name__ == "__main__":
    main()
