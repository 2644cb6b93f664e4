"""settle_heap: start-up's objects out of the collector's sight, and after a reload the old
ones collectable again."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from gateway.runtime import GC_THRESHOLD, settle_heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_settle_freezes_start_up_and_a_second_settle_collects_the_old_cycles(
        restored_gc: None) -> None:
    old = Node()
    dead = weakref.ref(old)
    settle_heap()
    assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] == GC_THRESHOLD
    del old  # garbage now, but frozen: a collection does not look at it
    gc.collect()
    assert dead() is not None
    settle_heap()  # the next start (a reload): unfrozen, collected, frozen again
    assert dead() is None

