"""The event catalogue (gateway/events.py) and what must stay equal to it: the wire schema,
the table in docs/wire-format.md, the hooks' records, the channels' default templates, and the
names the producers use."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway import events
from gateway.model import Event

ROOT = Path(__file__).resolve().parents[2]


def message(event: Event) -> dict[str, Any]:
    """The event as the uplink publishes it (through JSON)."""
    loaded: dict[str, Any] = json.loads(json.dumps({"v": 1, "gw": "gw-1", **event.to_wire()}))
    return loaded


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads((ROOT / "config/wire/events.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_the_schema_file_is_generated_from_the_catalogue() -> None:
    assert (ROOT / "config/wire/events.schema.json").read_text() == events.schema_text(), \
        "run: python -m gateway.events --write"


def test_the_doc_table_is_the_catalogue() -> None:
    doc = (ROOT / "docs/wire-format.md").read_text()
    assert events.doc_with_table(doc) == doc, "run: python -m gateway.events --write"
    documented = re.findall(r"^\| `([a-z0-9_]+)` \|", doc, re.M)
    assert documented == list(events.CATALOGUE)


def test_every_name_constant_is_in_the_catalogue() -> None:
    names = {v for k, v in vars(events).items() if k.isupper() and isinstance(v, str)
             and re.fullmatch(r"[a-z0-9_]+", v)}
    assert names == set(events.CATALOGUE)


@pytest.mark.parametrize("name", list(events.CATALOGUE))
def test_every_body_is_checked(name: str, validator: jsonschema.protocols.Validator) -> None:
    body = dataclasses.asdict(events.CATALOGUE[name].body())
    validator.validate(message(Event(name, body)))
    assert events.problems(name, body) == []
    first = next(iter(body))
    missing = {k: v for k, v in body.items() if k != first}
    extra = {**body, "not_in_the_catalogue": 1}
    for bad in (missing, extra):
        assert not validator.is_valid(message(Event(name, bad)))
        assert events.problems(name, bad)


def test_types_are_checked_too(validator: jsonschema.protocols.Validator) -> None:
    body = {"device": "m1", "old_status": "online", "new_status": "broken", "reason": "",
            "planned": False}
    assert not validator.is_valid(message(Event(events.DEVICE_STATUS_CHANGED, body)))
    assert events.problems(events.DEVICE_STATUS_CHANGED, body) == [
        "device_status_changed: new_status='broken' does not match "
        "{'enum': ['online', 'offline', 'alarm', 'maintenance']}"]
    body = {"dropped": "3", "up_to_seq": 9, "max_bytes": 1024}
    assert not validator.is_valid(message(Event(events.BUFFER_OVERFLOW, body)))
    assert events.problems(events.BUFFER_OVERFLOW, body)


def test_a_type_outside_the_catalogue_has_a_free_form_body(
        validator: jsonschema.protocols.Validator) -> None:
    validator.validate(message(Event("acme_fault", {"anything": [1, 2]}, device="x")))
    assert events.problems("acme_fault", {"anything": 1}) == []


def test_real_producers_match_the_catalogue() -> None:
    """Producers not covered by a harness check (the rules harness and the drivers'
    RecordingContext check every event they see): the bodies are built by these functions."""
    from drivers.ocpp.orders import ChargingOrder
    from gateway.rules.alarms import Alarm
    from gateway.siteops.workorders import COLUMNS, as_dict, order_event

    alarm = Alarm("a1", "pv-high", "threshold", "major", "pv1", "p", "hi", "too high", 1, 5.0)
    order = ChargingOrder(order_id="o1", charger="cp1", connector=1, id_tag="tag",
                          transaction_id="7", started_ts=1, meter_start_wh=0.0)
    done = dataclasses.replace(order, stopped_ts=2, meter_stop_wh=5.0, energy_wh=5.0,
                               stop_reason="Local")
    row = {c: None for c in COLUMNS} | {
        "id": "w1", "title": "t", "description": "", "priority": "normal", "status": "open",
        "notes": "[]", "source": "", "created_by": "acme", "created_ts": 1, "updated_ts": 1,
        "resolution": ""}
    work = as_dict(tuple(row[c] for c in COLUMNS))
    bodies = [
        (events.ALARM_CREATED, alarm.created_body()),
        (events.ALARM_RESOLVED, alarm.resolved_body(2)),
        (events.CHARGING_ORDER_CREATED, order.created_body()),
        (events.CHARGING_ORDER_COMPLETED, done.completed_body()),
        (events.WORK_ORDER_CREATED,
         dict(order_event(events.WORK_ORDER_CREATED, work, "created").body)),
    ]
    for name, body in bodies:
        assert events.problems(name, body) == [], name


def test_the_hooks_records_carry_every_body_key() -> None:
    from hooks import models

    def keys(cls: type) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    covered = {
        events.ALARM_CREATED: keys(models.AlarmEvent),
        events.ALARM_RESOLVED: keys(models.AlarmEvent),
        events.QUOTA_EXCEEDED: (keys(models.Quota) | keys(models.QuotaUsage) | {"quota"}),
        events.WORK_ORDER_CREATED: keys(models.WorkOrder),
        events.WORK_ORDER_COMPLETED: keys(models.WorkOrder),
        events.INSPECTION_COMPLETED: keys(models.InspectionRecord),
        # file_path is its own argument of on_report_generated
        events.REPORT_GENERATED: keys(models.ReportTask) | {"file_path"},
        events.CHARGING_ORDER_CREATED: keys(models.ChargingOrder),
        events.CHARGING_ORDER_COMPLETED: keys(models.ChargingOrder),
    }
    for name, attrs in covered.items():
        missing = set(events.CATALOGUE[name].keys) - attrs
        assert not missing, f"{name}: hooks records lack {missing}"


def test_the_hooks_dispatcher_routes_only_catalogue_types() -> None:
    from hooks.dispatcher import ROUTES

    assert set(ROUTES) <= set(events.CATALOGUE)


def test_default_notice_templates_use_body_keys() -> None:
    from gateway.channels.component import DEFAULT_TEMPLATES

    envelope = {"id", "type", "ts", "gateway", "device"}
    for name, template in DEFAULT_TEMPLATES.items():
        fields = {f for text in (template.title, template.text)
                  for _, f, _, _ in string.Formatter().parse(text) if f}
        unknown = fields - envelope - set(events.CATALOGUE[name].keys)
        assert not unknown, f"template {name} uses {unknown}"


def _event_type_literals(tree: ast.AST) -> Iterator[str]:
    """Every string literal that can become an event type in ``tree``: anywhere in the type
    argument of an ``Event(...)`` call (``Event(A if x else "b", ...)`` included), and the
    value of a ``*_EVENT = "x"`` constant."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else (
                node.func.attr if isinstance(node.func, ast.Attribute) else "")
            if name != "Event":
                continue
            args = [*node.args[:1], *(k.value for k in node.keywords if k.arg == "type")]
            for arg in args:
                for sub in ast.walk(arg):
                    if isinstance(sub, ast.JoinedStr):
                        break
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                        yield sub.value
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id.endswith("EVENT"):
                    yield node.value.value


def test_producers_name_only_catalogue_types() -> None:
    """A literal event type in the code (``Event("x", ...)``, ``Event(A if c else "x")`` or
    a ``*_EVENT = "x"`` constant) must be in the catalogue."""
    found = {}
    for package in ("gateway", "drivers", "hooks"):
        for path in (ROOT / package).rglob("*.py"):
            for name in _event_type_literals(ast.parse(path.read_text())):
                found[name] = path.relative_to(ROOT)
    assert len(found) > 5, "the scan found (almost) no producer at all"
    unknown = {name: str(path) for name, path in found.items() if name not in events.CATALOGUE}
    assert not unknown, f"event types missing from gateway/events.py: {unknown}"


def test_the_producer_scan_sees_a_type_in_a_conditional() -> None:
    source = 'e = Event(A if full else "store_write_recovered", {})\nX_EVENT = "x_y"\n'
    assert sorted(_event_type_literals(ast.parse(source))) == ["store_write_recovered", "x_y"]
