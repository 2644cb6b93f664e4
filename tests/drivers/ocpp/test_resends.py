"""Transaction messages re-sent after a lost answer, against simulated charge points (the
``ocpp`` library's ChargePoint) on a real websocket: never a second charging order, never a
"no open order" warning, also when two stops arrive at the same moment."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from drivers.ocpp.simulator import SimCharger
from drivers.testing import MemoryKV, RecordingContext
from tests.drivers.ocpp.conftest import charger, server
from tests.support.wait import let_tasks_run

TAGS = [{"id_tag": "TAG-OK"}]


class YieldingKV(MemoryKV):
    """Like the SQLite-backed KV, every access gives the event loop a turn."""

    async def get(self, key: str, default: Any = None) -> Any:
        await let_tasks_run(1)
        return await super().get(key, default)

    async def put(self, key: str, value: Any) -> None:
        await let_tasks_run(1)
        await super().put(key, value)

    async def delete(self, key: str) -> None:
        await let_tasks_run(1)
        await super().delete(key)


class YieldingContext(RecordingContext):
    def kv(self, namespace: str) -> MemoryKV:
        return self._kv.setdefault(namespace, YieldingKV())


def record_sent(sim: SimCharger) -> list[Any]:
    """Every payload the simulated charger sends, so a test can send one again."""
    sent: list[Any] = []
    original = sim.cp.call

    async def call(payload: Any, **kw: Any) -> Any:
        sent.append(payload)
        return await original(payload, **kw)

    sim.cp.call = call
    return sent


def kinds(ctx: RecordingContext, kind: str) -> list[Any]:
    return [e for e in ctx.events if e.type == kind]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_stop_resent_after_a_lost_answer_makes_no_second_order(
    make_gateway: Any, version: str, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await make_gateway([server(id_tags=TAGS), charger("cp-1")])
    sim = gw.sim("cp-1", version)
    await sim.connect()
    await sim.boot()
    sim.state[1].meter_wh = 1000.0
    await sim.start(1, "TAG-OK")
    sim.advance(1, 600)
    await sim.meter_values(1)
    sent = record_sent(sim)
    await sim.stop(1, "EVDisconnected")
    stop = sent[-1]
    # the answer was lost with the connection: the charger reconnects and sends it again
    caplog.set_level(logging.INFO, logger="drivers.ocpp")
    await sim.disconnect()
    await sim.connect()
    await sim.cp.call(stop, suppress=False)

    assert len(kinds(gw.ctx, "charging_order_created")) == 1
    completed = kinds(gw.ctx, "charging_order_completed")
    assert len(completed) == 1
    assert completed[0].body["energy_wh"] == pytest.approx(1833.3, abs=1.0)
    assert completed[0].body["id_tag"] == "TAG-OK"
    assert await gw.driver.hub.orders.open_orders() == []
    assert "no open order" not in caplog.text
    assert "already completed" in caplog.text or "re-sent" in caplog.text


async def test_updated_resent_after_completion_opens_nothing(make_gateway: Any) -> None:
    gw = await make_gateway([server(id_tags=TAGS), charger("cp-1")])
    sim = gw.sim("cp-1", "2.0.1")
    await sim.connect()
    await sim.boot()
    await sim.start(1, "TAG-OK")
    sent = record_sent(sim)
    sim.advance(1, 60)
    await sim.meter_values(1)  # an Updated event
    updated = sent[-1]
    await sim.stop(1)
    await sim.cp.call(updated, suppress=False)
    assert len(kinds(gw.ctx, "charging_order_created")) == 1
    assert await gw.driver.hub.orders.open_orders() == []


async def test_two_stops_at_once_then_resent_are_both_recognised(
    make_gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = YieldingContext()
    gw = await make_gateway([server(id_tags=TAGS), charger("cp-a"), charger("cp-b")], ctx)
    sims = [gw.sim("cp-a", "2.0.1"), gw.sim("cp-b", "2.0.1")]
    sent = []
    for sim in sims:
        await sim.connect()
        await sim.boot()
        await sim.start(1, "TAG-OK")
        sent.append(record_sent(sim))
    caplog.set_level(logging.INFO, logger="drivers.ocpp")
    await asyncio.gather(*(sim.stop(1) for sim in sims))
    assert len(kinds(ctx, "charging_order_completed")) == 2
    await asyncio.gather(*(sim.cp.call(log[-1], suppress=False)
                           for sim, log in zip(sims, sent, strict=True)))
    assert len(kinds(ctx, "charging_order_completed")) == 2
    assert len(kinds(ctx, "charging_order_created")) == 2
    assert "no open order" not in caplog.text


async def test_concurrent_closes_lose_no_recently_completed_entry(
    caplog: pytest.LogCaptureFixture
) -> None:
    """The lost update itself, in lockstep: every close reads and writes the list while the
    others do (over the network the window is one KV round trip wide, hit only now and then)."""
    from drivers.ocpp.orders import OrderBook

    book = OrderBook(YieldingContext())
    txs = [str(n) for n in range(8)]
    for tx in txs:
        await book.open(charger="cp-1", connector=1, id_tag="T", transaction_id=tx,
                        started_ts=1, meter_start_wh=0.0)
    caplog.set_level(logging.INFO, logger="drivers.ocpp.orders")
    closed = await asyncio.gather(*(book.close(charger="cp-1", transaction_id=tx, stopped_ts=2,
                                               meter_stop_wh=10.0, stop_reason="Local")
                                    for tx in txs))
    assert all(order is not None for order in closed)
    for tx in txs:  # each stop re-sent: recognised, not "state lost"
        assert await book.recently_completed("cp-1", tx)
        assert await book.close(charger="cp-1", transaction_id=tx, stopped_ts=2,
                                meter_stop_wh=10.0, stop_reason="Local") is None
    assert "no open order" not in caplog.text
