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
