"""AckWindow: in-order issue, out-of-order PUBACKs, the store acknowledged up to the highest
contiguous mark only."""

from __future__ import annotations

import pytest

from gateway.uplink.ackwindow import AckWindow


def test_out_of_order_acks_move_the_mark_only_when_contiguous() -> None:
    w = AckWindow(start=10)
    a, b, c = w.issue(12), w.issue(15), w.issue(20)
    assert (w.pos, w.in_flight) == (20, 3)
    w.done(c)
    w.done(b)
    assert w.high == 10 and w.unstored() is None, "12 is not acknowledged yet"
    w.done(a)
    assert (w.high, w.in_flight, w.unstored()) == (20, 0, 20)
    w.stored(20)
    assert w.unstored() is None


def test_a_store_write_in_between_is_not_repeated() -> None:
    w = AckWindow()
    a, b = w.issue(1), w.issue(2)
    w.done(a)
    assert w.unstored() == 1
    w.stored(1)
    w.done(b)
    assert w.unstored() == 2


def test_marks_must_increase_and_reset_starts_over() -> None:
    w = AckWindow(start=5)
    w.issue(6)
    with pytest.raises(ValueError, match="marks must increase: 6 after 6"):
        w.issue(6)
    w.reset(3)
    assert (w.pos, w.high, w.acked, w.in_flight) == (3, 3, 3, 0)
