"""Poll statistics: nearest-rank percentiles over a window, cumulative histogram, errors."""

from __future__ import annotations

from gateway.pollstats import BUCKETS, WINDOW, PollStatsBook


def test_percentiles_histogram_and_errors() -> None:
    now = [1_000]
    book = PollStatsBook(lambda: now[0])
    stats = book.of("meter-1")
    assert book.of("meter-1") is stats and book.get("other") is None
    assert stats.snapshot()["latency_ms"] == {"p50": None, "p99": None}
    for ms in range(100, 0, -1):  # 1..100 ms, in reverse to show the order does not matter
        stats.ok(ms / 1000)
    now[0] = 2_000
    stats.error("timeout", "no answer within 1.0 s")
    stats.error("exception", "exception code 2 (illegal data address)", latency=0.004)
    snap = stats.snapshot()
    assert snap["requests"] == 102
    assert snap["errors"] == {"timeout": 1, "exception": 1} and snap["error_total"] == 2
    assert snap["last_error"] == {"kind": "exception", "ts_ms": 2_000,
                                  "message": "exception code 2 (illegal data address)"}
    assert snap["latency_ms"] == {"p50": 50.0, "p99": 99.0}
    buckets, total_s, count = stats.histogram()
    assert count == 101 and [b for b, _ in buckets][:-1] == list(BUCKETS)
    assert dict(buckets)[0.005] == 6 and dict(buckets)[0.05] == 51 and buckets[-1][1] == 101
    assert abs(total_s - (5.050 + 0.004)) < 1e-9
    assert book.snapshot() == {"meter-1": snap}


def test_percentiles_follow_the_latest_window() -> None:
    stats = PollStatsBook(lambda: 0).of("bus")
    for _ in range(WINDOW):
        stats.ok(2.0)
    for _ in range(WINDOW):
        stats.ok(0.010)
    assert stats.percentile(0.99) == 0.010  # the slow start has left the window
    assert stats.histogram()[2] == 2 * WINDOW  # the histogram keeps everything


def test_the_window_keeps_microseconds_in_4_bytes_each() -> None:
    stats = PollStatsBook(lambda: 0).of("bus")
    for latency in (0.0123456, 0.0000004, 1e9):  # rounded to the microsecond; a huge one capped
        stats.ok(latency)
    assert stats.percentile(0.0) == 0.0 and stats.percentile(0.5) == 0.012346
    assert stats.percentile(1.0) == (2**32 - 1) / 1_000_000  # about 71 minutes
    assert stats._ring.itemsize == 4  # 1 KB per device for the window, not 2
