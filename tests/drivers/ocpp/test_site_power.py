"""The site power share, counted at the simulated charge points (real websockets): recomputed
and re-sent on every attach and detach, never above the site limit, and each profile sent once
per change of the site limit."""

from __future__ import annotations

from typing import Any

from drivers.ocpp.simulator import SimCharger
from drivers.ocpp.sitepower import lowering_first, plan_shares
from tests.drivers.ocpp.conftest import charger, server
from tests.drivers.ocpp.test_commands import wait_until

TAGS = [{"id_tag": "T"}]


def profiles(sim: SimCharger, action: str = "SetChargingProfile") -> int:
    return sum(1 for name, _ in sim.received if name == action)


def in_force(*sims: SimCharger) -> float:
    """What the chargers with a transaction may draw (a charger without a limit: its max)."""
    return sum(min(s.power_w, c.limit_w if c.limit_w is not None else s.power_w)
               for s in sims for c in s.state.values() if c.transaction_id is not None)


async def test_share_recomputed_on_attach_and_detach_and_resent_on_reconnect(
    make_gateway: Any
) -> None:
    gw = await make_gateway([server(max_site_power_w=22000, id_tags=TAGS),
                             charger("cp-a"), charger("cp-b"), charger("cp-c")])
    a, b = gw.sim("cp-a", "1.6", power_w=22000), gw.sim("cp-b", "2.0.1", power_w=22000)
    c = gw.sim("cp-c", "1.6", power_w=22000)
    for sim in (a, b):
        await sim.connect()
        await sim.boot()
        await sim.start(1, "T")
    await wait_until(lambda: a.state[1].limit_w == 11000.0 and b.state[1].limit_w == 11000.0)

    # a drops off with its session open: it keeps charging at its 11 kW, so b stays at 11 kW
    await a.disconnect()
    await wait_until(lambda: gw.driver.hub.sessions.keys() == {"cp-b"})
    await wait_until(lambda: not gw.driver.hub.rebalancing)
    assert b.state[1].limit_w == 11000.0
    # c starts while a is away: b and c share what a does not hold
    await c.connect()
    await c.boot()
    await c.start(1, "T")
    await wait_until(lambda: b.state[1].limit_w == 5500.0 and c.state[1].limit_w == 5500.0)
    assert in_force(a, b, c) <= 22000

    # a rebooted meanwhile and lost its profile; on reconnect it gets its share again, and
    # b and c theirs
    a.state[1].limit_w = None
    sent_before = profiles(a)
    await a.connect()
    await wait_until(lambda: all(s.state[1].limit_w == 7333.3 for s in (a, b, c)))
    assert profiles(a) == sent_before + 1
    assert in_force(a, b, c) <= 22000

    # a's session ended while it was away (its stop is queued): on reconnect the stop arrives
    # and the others share its power
    await a.disconnect()
    await a.stop(1)
    assert a.queue
    await a.connect()
    await wait_until(lambda: b.state[1].limit_w == 11000.0 and c.state[1].limit_w == 11000.0)
    assert in_force(a, b, c) <= 22000


def test_plan_reserves_what_an_offline_charger_holds_and_lowers_first() -> None:
    sessions = [("a", 1), ("b", 1), ("c", 1)]
    assert plan_shares(None, sessions, {"a", "b"}, {}) == {("a", 1): None, ("b", 1): None}
    assert plan_shares(22000, sessions, {"a", "b", "c"}, {}) == dict.fromkeys(sessions, 7333.3)
    # c is away holding 11 kW; unknown (after a restart): an equal share is reserved
    assert plan_shares(22000, sessions, {"a", "b"}, {("c", 1): 11000}) == {
        ("a", 1): 5500.0, ("b", 1): 5500.0}
    assert plan_shares(21000, sessions, {"a", "b"}, {}) == {("a", 1): 7000.0, ("b", 1): 7000.0}
    # a lower site limit than an offline charger holds: the others pause (0 W)
    assert plan_shares(4000, sessions, {"a", "b"}, {("c", 1): 11000}) == {
        ("a", 1): 0.0, ("b", 1): 0.0}
    plan = {("a", 1): 7333.3, ("b", 1): 7333.3, ("c", 1): 7333.3}
    held = {("a", 1): 5500.0, ("b", 1): 11000.0}  # c has no limit yet: it goes down too
    assert lowering_first(plan, held)[:2] == [("b", 1), ("c", 1)]


async def test_each_profile_is_sent_once_per_site_limit_change(make_gateway: Any) -> None:
    gw = await make_gateway([server(max_site_power_w=12000, id_tags=TAGS),
                             charger("cp-a"), charger("cp-b")])
    a, b = gw.sim("cp-a", "1.6"), gw.sim("cp-b", "2.0.1")
    for sim in (a, b):
        await sim.connect()
        await sim.boot()
        await sim.start(1, "T")
    await wait_until(lambda: a.state[1].limit_w == 6000.0 and b.state[1].limit_w == 6000.0)
    await wait_until(lambda: not gw.driver.hub.rebalancing)
    limit = gw.command("ocpp.limit")
    for site_limit, share in ((4000, 2000.0), (9000, 4500.0), (None, 6000.0)):
        before = {sim.charger_id: profiles(sim) for sim in (a, b)}
        result = await limit(scope="site", limit_w=site_limit)
        assert result["applied"] == {"cp-a/1": share, "cp-b/1": share}
        await wait_until(lambda: not gw.driver.hub.rebalancing)
        assert a.state[1].limit_w == share and b.state[1].limit_w == share
        for sim in (a, b):
            assert profiles(sim) == before[sim.charger_id] + 1, (site_limit, sim.received)
    # the same limit again changes nothing and sends nothing
    before = {sim.charger_id: profiles(sim) for sim in (a, b)}
    assert (await limit(scope="site", limit_w=None))["applied"] == {}
    assert {sim.charger_id: profiles(sim) for sim in (a, b)} == before
