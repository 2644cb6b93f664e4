"""Remote logs: logs.tail from a bounded ring, logs.level that reverts after its ttl (#18)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from gateway.control import send_command
from gateway.logring import LogRing
from tests.support.app import running_app
from tests.support.wait import wait_until


def record(ring: LogRing, name: str, level: int, msg: str) -> None:
    ring.handle(logging.LogRecord(name, level, __file__, 1, msg, None, None))


def test_the_ring_is_bounded_by_lines_and_bytes() -> None:
    ring = LogRing(max_lines=10, max_bytes=100)
    for i in range(25):
        record(ring, "a", logging.INFO, f"line {i:02d}")
    assert [e.msg for e in ring.tail(100)] == [f"line {i:02d}" for i in range(15, 25)]
    assert ring.dropped == 15
    record(ring, "a", logging.INFO, "x" * 95)
    assert ring.bytes <= 100 and ring.tail(100)[-1].msg == "x" * 95
    assert len(ring.entries) == 1


def test_tail_filters() -> None:
    ring = LogRing()
    record(ring, "drivers.modbus", logging.DEBUG, "d")
    record(ring, "drivers.modbus.bus", logging.WARNING, "w")
    record(ring, "drivers.modbusx", logging.ERROR, "not a child")
    record(ring, "gateway", logging.INFO, "i")
    assert [e.msg for e in ring.tail(10, logging.WARNING)] == ["w", "not a child"]
    assert [e.msg for e in ring.tail(10, logger="drivers.modbus")] == ["d", "w"]
    assert [e.msg for e in ring.tail(2)] == ["not a child", "i"]
    assert ring.tail(10, since_ms=int(time.time() * 1000) + 60_000) == []


async def test_logs_tail_and_a_level_that_reverts(tmp_path: Path) -> None:
    cfg = {"devices": [{"id": "sim", "type": "simulated", "interval": 0.1}]}
    chatty = logging.getLogger("fieldgate.test.chatty")
    chatty.setLevel(logging.INFO)
    async with running_app(cfg, tmp_path) as app:
        state = app.state_dir
        t0 = int(time.time() * 1000)
        chatty.info("hello %s", "remote")
        chatty.debug("not yet")
        reply = await send_command(state, "logs.tail", {"logger": "fieldgate.test.chatty",
                                                        "since": t0})
        assert reply["ok"], reply
        assert [line["msg"] for line in reply["result"]["lines"]] == ["hello remote"]
        assert reply["result"]["lines"][0]["level"] == "INFO"

        bad = await send_command(state, "logs.level", {"logger": "x", "level": "LOUD"})
        assert bad["error"]["code"] == "bad_arguments"
        raised = await send_command(state, "logs.level", {"logger": "fieldgate.test.chatty",
                                                          "level": "DEBUG", "ttl": 0.5})
        assert raised["ok"] and raised["result"]["level"] == "DEBUG"
        chatty.debug("now shown")
        await wait_until(lambda: chatty.level == logging.INFO, 10,  # reverts by itself
                         what="the level reverted")
        chatty.debug("hidden again")
        tail = await send_command(state, "logs.tail", {"logger": "fieldgate.test.chatty",
                                                       "level": "DEBUG", "since": t0})
        assert [line["msg"] for line in tail["result"]["lines"]] == ["hello remote",
                                                                    "now shown"]
        warn = await send_command(state, "logs.tail", {"level": "WARNING", "since": t0})
        assert any("set to DEBUG for 0.5 s" in line["msg"] for line in warn["result"]["lines"])
