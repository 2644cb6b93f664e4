"""The objects hooks receive: frozen records built from committed event bodies.

They are built on the body types of the event catalogue (:mod:`gateway.events`), so
``alarm_event.severity`` is the ``severity`` key of the ``alarm_created`` body, and a key added
to a body there is an attribute here. Keys a producer adds later land in
``extra`` instead of breaking the build; keys it leaves out take the defaults. Every record
carries ``event_id``: the id of the event being delivered, the key for idempotency.

Read-only for real: a record is a tuple underneath (:func:`record`), so neither assignment
nor ``object.__setattr__`` can change it, and its mappings are ``MappingProxyType`` views of
copies, nested values frozen too. It is still a dataclass to the standard library:
``dataclasses.asdict``, ``fields`` and ``replace`` work, and ``to_dict()`` returns plain JSON
types. A few aliases keep the attribute names of the original ``CustomerHooks`` platform
where the meaning is the same (``alarm_event.id``, ``order.id``, ``usage.usage_rate``).
"""

from __future__ import annotations

import collections
import copyreg
import dataclasses
import functools
import operator
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar, dataclass_transform

from gateway import events
from gateway.model import Event

C = TypeVar("C")

#: The ``extra`` of a record without unknown keys.
EMPTY: Mapping[str, Any] = MappingProxyType({})

# ``dataclasses.asdict`` deep-copies values it does not know, and a mappingproxy cannot be
# copied ("cannot pickle 'mappingproxy'"): copy (and pickle) one as the dict it shows.
def _reduce_proxy(proxy: Any) -> Any:
    return (dict, (dict(proxy),))


copyreg.pickle(MappingProxyType, _reduce_proxy)


def _same(value: Any) -> Any:
    return value


def freeze(value: Any) -> Any:
    """``value`` with its lists as tuples and its dicts as read-only views, all the way down."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The plain JSON-like form of a frozen value (dicts and lists)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


@dataclass_transform(frozen_default=True)
def record(aliases: Mapping[str, str] | None = None) -> Callable[[type[C]], type[C]]:
    """Make the annotated class a read-only record: a named tuple (no attribute can be set,
    not even with ``object.__setattr__``) that is also a dataclass to ``dataclasses``, with
    ``to_dict()`` and the read-only ``aliases`` (alias -> field). The fields of a dataclass
    it derives from (a catalogue body) come first; the record is a tuple, not an instance of
    that body class."""

    def build(cls: type[C]) -> type[C]:
        annotations = dict(cls.__annotations__)
        attrs: dict[str, Any] = {}
        for k, v in vars(cls).items():
            if k in annotations:  # an unhashable default (EMPTY) needs a factory
                attrs[k] = v if type(v).__hash__ is not None else dataclasses.field(
                    default_factory=functools.partial(_same, v))
        # The fields of a catalogue body it extends (gateway.events) come first.
        bases = tuple(b for b in cls.__bases__ if dataclasses.is_dataclass(b))
        spec: Any = dataclasses.dataclass(frozen=True)(type(cls.__name__, bases, {
            "__annotations__": annotations, "__module__": cls.__module__, **attrs}))
        fields: tuple[Any, ...] = dataclasses.fields(spec)
        names = [f.name for f in fields]
        defaults = [f.default if f.default is not dataclasses.MISSING else f.default_factory()
                    for f in fields if f.default is not dataclasses.MISSING
                    or f.default_factory is not dataclasses.MISSING]
        make: Any = collections.namedtuple
        base = make(cls.__name__, names, defaults=defaults, module=cls.__module__)

        def to_dict(self: Any) -> dict[str, Any]:
            """The record as plain JSON-like types (dicts, lists)."""
            return {n: thaw(getattr(self, n)) for n in names}

        def __repr__(self: Any) -> str:
            return f"{cls.__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in names)})"

        ns: dict[str, Any] = {
            "__slots__": (), "__doc__": cls.__doc__, "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__dataclass_fields__": spec.__dataclass_fields__,
            "__dataclass_params__": spec.__dataclass_params__,
            "to_dict": to_dict, "__repr__": __repr__}
        for alias, target in (aliases or {}).items():
            ns[alias] = property(operator.attrgetter(target),
                                 doc=f"Alias of ``{target}`` (the original platform's name).")
        built: Any = type(cls.__name__, (base,), ns)
        return built

    return build


@record()
class Device:
    id: str
    type: str | None = None
    name: str | None = None
    tags: tuple[str, ...] = ()
    status: str | None = None
    event_id: str = ""


@record(aliases={"id": "alarm_id"})
class AlarmEvent(events.AlarmCreated):
    """``alarm_created`` or ``alarm_resolved`` (``state``): the created body plus the keys
    only the resolved body has."""

    resolved_ts: int | None = None
    last_value: Any = None
    state: str = "active"
    event_id: str = ""
    extra: Mapping[str, Any] = EMPTY


@record()
class Rule:
    name: str = ""
    kind: str = ""
    severity: str = ""
    event_id: str = ""


@record()
class Quota:
    name: str = ""
    devices: tuple[str, ...] = ()
    period: str = ""
    period_start: str = ""
    period_end: str = ""
    threshold_pct: float = 0.0
    budget_kwh: float = 0.0
    action: Mapping[str, Any] | None = None  # e.g. {"limit_charging": {"power_w": ..}}
    event_id: str = ""
    extra: Mapping[str, Any] = EMPTY


@record(aliases={"usage_rate": "usage_pct"})
class QuotaUsage:
    usage_kwh: float = 0.0
    budget_kwh: float = 0.0
    usage_pct: float = 0.0
    period_start: str = ""
    period_end: str = ""
    event_id: str = ""


@record(aliases={"id": "order_id"})
class WorkOrder(events.WorkOrderBody):
    event_id: str = ""
    extra: Mapping[str, Any] = EMPTY


@record()
class InspectionRecord(events.InspectionCompleted):
    event_id: str = ""
    extra: Mapping[str, Any] = EMPTY


@record()
class ReportTask(events.ReportGenerated):
    """The ``report_generated`` body (``file_path`` is also the hook's own argument)."""

    event_id: str = ""
    extra: Mapping[str, Any] = EMPTY


@record(aliases={"id": "order_id"})
class ChargingOrder(events.ChargingOrderCompleted):
    """``charging_order_created`` (the stop fields are None) or ``_completed``."""

    event_id: str = ""
    extra: Mapping[str, Any] = EMPTY


class DataPoint(NamedTuple):
    """One committed sample. A NamedTuple, not a dataclass, for the same reason as
    :class:`gateway.model.Sample`: this hook is called once per sample, at up to hundreds of
    thousands per second, and a tuple is the cheapest immutable record CPython builds."""

    device: str
    point: str
    ts_ms: int
    value: Any
    quality: str
    seq: int

    @property
    def event_id(self) -> str:
        return f"sample:{self.seq}"


T = TypeVar("T")


def from_body(cls: type[T], body: Mapping[str, Any], event_id: str,
              rename: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from an event body: known keys become fields (after ``rename``),
    unknown ones go to ``extra`` when the class has it, lists become tuples."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in body.items():
        key = (rename or {}).get(key, key)
        if key in names and key not in ("event_id", "extra"):
            kwargs[key] = freeze(value)
        else:
            extra[key] = value
    kwargs["event_id"] = event_id
    if "extra" in names:
        kwargs["extra"] = freeze(extra)
    return cls(**kwargs)


def alarm_of(event: Event) -> AlarmEvent:
    state = "resolved" if event.type == events.ALARM_RESOLVED else "active"
    alarm = from_body(AlarmEvent, event.body, event.id)
    return alarm._replace(state=state)  # type: ignore[attr-defined]


def rule_of(event: Event) -> Rule:
    body = event.body
    return Rule(name=str(body.get("rule", "")), kind=str(body.get("kind", "")),
                severity=str(body.get("severity", "")), event_id=event.id)


def quota_of(event: Event) -> tuple[Quota, QuotaUsage]:
    quota = from_body(Quota, event.body, event.id, rename={"quota": "name"})
    usage = QuotaUsage(
        usage_kwh=float(event.body.get("usage_kwh", 0.0)),
        budget_kwh=float(event.body.get("budget_kwh", 0.0)),
        usage_pct=float(event.body.get("usage_pct", 0.0)),
        period_start=str(event.body.get("period_start", "")),
        period_end=str(event.body.get("period_end", "")),
        event_id=event.id,
    )
    return quota, usage
