"""gateway.heap: the free C heap goes back to the OS, and the pipeline asks for it."""

from __future__ import annotations

import pytest

from gateway import heap


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(heap._trim is None, reason="not glibc: trim is a no-op")
def test_trim_returns_the_freed_heap_that_malloc_kept() -> None:
    # 64 KB blocks come from the heap (below glibc's mmap threshold); one kept at the top
    # stops free() from shrinking the heap by itself, as live objects do in the daemon.
    blocks = [bytearray(64 * 1024) for _ in range(400)]
    keep = bytearray(64 * 1024)
    del blocks
    before = _rss()
    heap.trim()
    after = _rss()
    assert before - after > 10 * 1024 * 1024, (before, after)
    assert keep is not None


def test_trim_every_waits_its_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(heap, "_trim", calls.append)
    heap.trim()
    assert calls == [0]
    heap.trim_every(3600)
    assert calls == [0], "not due yet"
    heap.trim_every(0)
    assert calls == [0, 0]


_BIG_BLOCKS = """
import sys
from gateway import heap

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

if sys.argv[1] == "tune":
    heap.tune()
big = bytearray(8 * 1024 * 1024)  # a big temporary, freed: glibc raises its threshold to it
del big
blocks, small = [], []
for _ in range(200):  # a commit's worth of big blocks, small live blocks in between
    blocks.append(bytearray(256 * 1024))
    small.append(bytearray(2000))
before = rss()
del blocks
print(before - rss())
"""


@pytest.mark.skipif(heap._mallopt is None, reason="not glibc: tune is a no-op")
def test_tune_gives_big_freed_blocks_back_at_once() -> None:
    """Without :func:`heap.tune` a big block freed once makes glibc serve the next big blocks
    from the heap, which keeps them when they are freed among small live ones; with it they
    are mapped alone and unmapped at ``free``. Fresh interpreters: glibc's state is global."""
    import subprocess
    import sys

    def given_back(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _BIG_BLOCKS, mode], capture_output=True,
                             text=True, check=True, timeout=60)
        return int(out.stdout)

    freed = 200 * 256 * 1024
    assert given_back("tune") > 0.9 * freed
    assert given_back("default") < 0.5 * freed  # the creep tune() stops
