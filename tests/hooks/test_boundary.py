"""The ``db`` boundary, tried from inside real hook calls: plugin A cannot read plugin B's
KV, cannot write a point not in its ``may_write``, and cannot reach the store or the app
through ``db``. And the records it gets are read-only for real."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.components import ComponentContext
from gateway.model import Event
from gateway.runtime import App
from gateway.store.db import Store
from hooks.db import WriteNotAllowed
from hooks.models import AlarmEvent, ChargingOrder, QuotaUsage, WorkOrder, from_body, quota_of
from hooks.spec import hookimpl
from tests.hooks.support import INVERTER, SIM, component, wait_for
from tests.support.app import running_app


def _order_event(i: int) -> Event:
    return Event("work_order_created", {"order_id": f"wo-{i}", "title": "t"}, id=f"b-ev-{i}")


class Keeper:
    """Plugin B: keeps a secret in its KV."""

    def __init__(self) -> None:
        self.done = False

    @hookimpl
    async def on_work_order_created(self, order: Any, db: Any) -> None:
        await db.kv().put("secret", "b-only")
        self.done = True


class Prober:
    """Plugin A: tries to get at B's KV, at unlisted points and at the store."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    @hookimpl
    async def on_work_order_created(self, order: Any, db: Any) -> None:
        seen = self.seen
        kv = db.kv()
        seen["own_items"] = await kv.items()
        seen["kv_namespace"] = _attempt(lambda: setattr(kv, "namespace", "plugin.keeper"))
        seen["kv_store"] = _attempt(lambda: kv._store)
        seen["kv_call_store"] = _attempt(lambda: kv._call("_store"))
        seen["db_app"] = _attempt(lambda: db._app)
        seen["db_store"] = _attempt(lambda: db.store)
        seen["db_call_app"] = _attempt(lambda: db._call("_app"))
        seen["db_vars"] = _attempt(lambda: vars(db))
        seen["db_set"] = _attempt(lambda: setattr(db, "plugin", "keeper"))
        seen["reachable"] = _reachable(db) + _reachable(kv)
        try:
            await db.write("pv1", "power_limit_w", 1234)
        except WriteNotAllowed as err:
            seen["write_refused"] = str(err)
        seen["write_ok"] = await db.write("pv1", "power_limit_w", 4000)


def _attempt(fn: Any) -> str:
    try:
        value = fn()
    except (AttributeError, TypeError) as err:
        return type(err).__name__
    return f"GOT {value!r}"


_INSIDE = (App, Store, ComponentContext)


def _reachable(obj: Any) -> list[str]:
    """App, context or Store instances reachable by reading public and private attributes, and the
    ``__self__`` of bound methods, two levels deep (what "by convention" reaches)."""
    found = []
    todo = [(obj, "db")]
    for _depth in range(2):
        nxt = []
        for o, path in todo:
            for name in dir(o):
                if name.startswith("__"):
                    continue
                try:
                    value = getattr(o, name)
                except Exception:
                    continue
                if isinstance(value, _INSIDE):
                    found.append(f"{path}.{name}")
                bound = getattr(value, "__self__", None)
                if isinstance(bound, _INSIDE):
                    found.append(f"{path}.{name}.__self__")
                nxt.append((value, f"{path}.{name}"))
        todo = nxt
    return found


async def test_db_boundary_from_inside_a_hook(tmp_path: Path) -> None:
    inverter = {**INVERTER, "interval": 0.2}
    cfg = {"devices": [SIM, inverter],
           "plugins": {"entry_points": False,
                       # prober may write m1's limit only; prober2 any pv*'s limit.
                       "prober": {"may_write": ["m1.power_limit_w"]},
                       "prober2": {"may_write": ["pv*.power_limit_w"]}}}
    async with running_app(cfg, tmp_path) as app:
        comp = component(app)
        keeper, prober = Keeper(), Prober()
        comp.add_plugin(keeper, "keeper")
        comp.add_plugin(prober, "prober")
        await app.store.add_events([_order_event(1)])
        await wait_for(lambda: keeper.done and "reachable" in prober.seen)
        seen = prober.seen
        # The writes: the unlisted point was refused (with what to do), so the first
        # attempt raised and "write_ok" never ran for this plugin.
        assert "write_ok" not in seen
        assert seen["write_refused"] == (
            "plugin prober may not write pv1.power_limit_w: add it (or a pattern such as "
            "'pv1.*') to plugins.prober.may_write in the config")
        stats = comp.runner.snapshot()["prober"]["on_work_order_created"]
        assert stats["errors"] == 1 and "WriteNotAllowed" in stats["last_error"]
        # B's KV is B's: A sees only its own (empty) map and cannot re-point its own.
        assert seen["own_items"] == []
        assert await comp.db_for("keeper").kv().items() == [("secret", "b-only")]
        for key in ("kv_namespace", "kv_store", "kv_call_store", "db_app", "db_store",
                    "db_call_app", "db_vars", "db_set"):
            assert not seen[key].startswith("GOT"), (key, seen[key])
        assert seen["reachable"] == []

        # The same code under a name whose may_write lists pv* writes for real.
        prober2 = Prober()
        comp.add_plugin(prober2, "prober2")
        await app.store.add_events([_order_event(2)])
        await wait_for(lambda: "write_ok" in prober2.seen)
        model = app.drivers["simulated"].models["pv1"]  # type: ignore[attr-defined]
        assert model.setpoint == 4000.0


def test_records_are_read_only_and_convert() -> None:
    body = {"alarm_id": "a-1", "severity": "major", "value": [1, 2],
            "vendor": {"code": "E7", "tags": ["x"]}}
    alarm = from_body(AlarmEvent, body, "ev-1")
    for attempt in (lambda: setattr(alarm, "severity", "minor"),
                    lambda: object.__setattr__(alarm, "severity", "minor"),
                    lambda: object.__setattr__(alarm, "new", 1),
                    lambda: setattr(alarm, "id", "x")):
        with pytest.raises(AttributeError):
            attempt()
    with pytest.raises(TypeError):
        alarm.extra["vendor"]["code"] = "X"  # type: ignore[index]
    assert alarm.severity == "major" and alarm.value == (1, 2)
    plain = dataclasses.asdict(alarm)
    assert plain["extra"] == {"vendor": {"code": "E7", "tags": ("x",)}}
    assert json.loads(json.dumps(plain))["extra"]["vendor"]["code"] == "E7"
    assert alarm.to_dict()["extra"] == {"vendor": {"code": "E7", "tags": ["x"]}}
    assert alarm.to_dict()["value"] == [1, 2]
    assert dataclasses.replace(alarm, severity="minor").severity == "minor"
    assert dataclasses.is_dataclass(alarm)
    # The original platform's names, read-only aliases of the same values.
    assert alarm.id == "a-1"
    assert WorkOrder(order_id="wo-1").id == "wo-1"
    assert ChargingOrder(order_id="co-1").id == "co-1"
    quota, usage = quota_of(Event("quota_exceeded", {"quota": "q", "usage_pct": 93.5,
                                                    "action": {"limit_charging": {}}}))
    assert usage.usage_rate == usage.usage_pct == 93.5
    assert isinstance(usage, QuotaUsage) and "usage_rate" not in usage.to_dict()
    assert quota.to_dict()["action"] == {"limit_charging": {}}
