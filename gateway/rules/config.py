"""The ``rules:`` config section: alarm rules and energy quotas.

Quotas are nested under ``rules.quotas`` rather than a second top-level section: they share the
device selector, the engine, the store tables and the tick task, and one key keeps the site
file easy to scan. Every model is strict (unknown keys are errors) and checked at load, so a
typo in a rule fails the config, never a running gateway. After the whole site validated,
:func:`check_against_devices` checks rules and quotas against the devices (see there).
"""

from __future__ import annotations

import enum
import fnmatch
import string
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from gateway.config.base import StrictModel
from gateway.config.site import register_checker


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"


#: Higher is worse; used for the device ``alarm`` status level.
SEVERITY_RANK: dict[str, int] = {"warning": 1, "minor": 2, "major": 3, "critical": 4}

Op = Literal[">", ">=", "<", "<=", "==", "!=", "outside", "inside"]

#: Names a message template may use. Unknown names are a config error, not a runtime crash.
TEMPLATE_FIELDS = frozenset({
    "device", "device_name", "point", "value", "threshold", "low", "high", "rule",
    "severity", "code", "text", "after", "window",
})


class Condition(StrictModel):
    """``op`` with ``value`` for comparisons, or with ``range: [low, high]`` for
    ``outside``/``inside`` (bounds included in the range)."""

    op: Op = Field(description="Comparison operator.")
    value: float | None = Field(None, description="Threshold for >, >=, <, <=, ==, !=.")
    range: tuple[float, float] | None = Field(
        None, description="[low, high] for outside/inside."
    )

    @model_validator(mode="after")
    def _operands(self) -> Condition:
        if self.op in ("outside", "inside"):
            if self.range is None:
                raise ValueError(f"op {self.op!r} needs range: [low, high]")
            if self.range[0] > self.range[1]:
                raise ValueError("range must be [low, high] with low <= high")
        elif self.value is None:
            raise ValueError(f"op {self.op!r} needs a value")
        return self


class Selector(StrictModel):
    """Which devices a rule or quota applies to. Every given criterion must match (AND);
    within one list any entry may match (OR). No criterion at all selects every device."""

    devices: list[str] = Field([], description="Device ids or globs (fnmatch), e.g. meter-*.")
    tags: list[str] = Field([], description="The device must carry one of these tags.")
    profiles: list[str] = Field(
        [], description="The device's `profile` (drivers that have one) must be one of these."
    )

    def matches(self, device: Any) -> bool:
        if self.devices and not any(
            fnmatch.fnmatchcase(device.id, pat) for pat in self.devices
        ):
            return False
        if self.tags and not set(self.tags) & set(getattr(device, "tags", ()) or ()):
            return False
        return not self.profiles or getattr(device, "profile", None) in self.profiles


def _check_template(template: str | None) -> str | None:
    if template is None:
        return None
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as err:
        raise ValueError(f"bad message template: {err}") from None
    unknown = {n.split(".")[0].split("[")[0] for n in names} - TEMPLATE_FIELDS
    if unknown:
        raise ValueError(
            f"message template uses unknown field(s) {sorted(unknown)}; "
            f"known: {sorted(TEMPLATE_FIELDS)}"
        )
    return template


class RuleBase(Selector):
    name: str = Field(min_length=1, max_length=128, description="Unique rule name.")
    severity: Severity = Field(Severity.MAJOR, description="critical, major, minor, warning.")
    message: str | None = Field(
        None, description="Template, e.g. '{device} {point} = {value} above {threshold}'."
    )
    enabled: bool = True

    @field_validator("message")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return _check_template(value)


class _Hysteresis(StrictModel):
    for_: float = Field(0, ge=0, alias="for", description="Seconds the condition must hold.")
    deadband: float = Field(
        0, ge=0, description="Resolve only once the value is this far back past the threshold."
    )
    clear: Condition | None = Field(None, description="Explicit resolve condition.")
    clear_for: float = Field(0, ge=0, description="Seconds the resolve condition must hold.")

    @model_validator(mode="after")
    def _one_clear(self) -> _Hysteresis:
        if self.clear is not None and self.deadband:
            raise ValueError("give either clear or deadband, not both")
        return self


class ThresholdRule(RuleBase, _Hysteresis):
    kind: Literal["threshold"] = "threshold"
    point: str = Field(min_length=1)
    condition: Condition


class RateRule(RuleBase, _Hysteresis):
    """The condition applies to the change per minute over ``window`` seconds."""

    kind: Literal["rate"]
    point: str = Field(min_length=1)
    window: float = Field(60, gt=0, description="Seconds of history the rate is taken over.")
    condition: Condition


class StaleRule(RuleBase):
    kind: Literal["stale"]
    point: str = Field(min_length=1)
    after: float = Field(gt=0, description="Raise when no good value came for this many s.")


class OfflineRule(RuleBase):
    kind: Literal["offline"]
    for_: float = Field(0, ge=0, alias="for", description="Seconds offline before raising.")


class FaultRule(RuleBase):
    """Fault codes from an enum point (one code at a time) or a bitmask point (one alarm per
    set bit). The code texts come from the rule's ``codes``, or, when it has none, from the
    point's own ``enum``/``bitmask`` map in the device config (Modbus points and profiles),
    so a register map documents its codes once."""

    kind: Literal["fault"]
    point: str = Field(min_length=1)
    mode: Literal["enum", "bitmask"] = "enum"
    codes: dict[int, str] | None = Field(
        None,
        description=(
            "enum: code -> text; bitmask: bit number -> text. Omit to use the point's own "
            "enum/bitmask map (Modbus devices); {}: any code, texts 'code N'/'bit N'."
        ),
    )
    ok: list[int] = Field([0], description="enum values that mean no fault.")

    @field_validator("codes")
    @classmethod
    def _bits(cls, codes: dict[int, str] | None) -> dict[int, str] | None:
        if codes is not None and any(c < 0 for c in codes):
            raise ValueError("codes must be >= 0")
        return codes

    @model_validator(mode="after")
    def _bit_range(self) -> FaultRule:
        if self.mode == "bitmask" and any(c > 63 for c in self.codes or ()):
            raise ValueError("bitmask bits are numbered 0..63")
        return self


AlarmRule = Annotated[
    Union[ThresholdRule, RateRule, StaleRule, OfflineRule, FaultRule],  # noqa: UP007
    Field(discriminator="kind"),
]


class LimitCharging(StrictModel):
    power_w: float = Field(gt=0, description="Charging power limit to apply.")
    chargers: list[str] = Field(
        [],
        description=(
            "Charger ids to limit each to power_w; empty: limit the whole site's charging "
            "to power_w, shared between the active sessions."
        ),
    )


class QuotaAction(StrictModel):
    at_pct: float = Field(100, gt=0, description="Threshold (%) that triggers the action.")
    limit_charging: LimitCharging | None = Field(
        None, description="Call the `ocpp.limit` command for each charger."
    )


class Quota(Selector):
    name: str = Field(min_length=1, max_length=128)
    period: Literal["day", "week", "month"] = Field(
        description="Calendar period in the site timezone (weeks start on Monday)."
    )
    budget_kwh: float = Field(gt=0)
    per_device: bool = Field(
        False, description="One budget per selected device instead of one for their sum."
    )
    thresholds: list[float] = Field([80, 100, 120], description="Percent of the budget.")
    energy_point: str | None = Field("energy_wh", description="Cumulative energy counter.")
    energy_unit: Literal["Wh", "kWh"] = "Wh"
    counter_max: float | None = Field(
        None, gt=0, description="Counter rollover value (in energy_unit), e.g. 4294967295."
    )
    power_point: str | None = Field(
        None, description="Power (W) to integrate for devices that deliver no counter."
    )
    max_power_w: float | None = Field(
        None, gt=0, description="Plausibility: a counter jump above max_power * dt is dropped."
    )
    max_gap_s: float = Field(
        300, gt=0, description="Power samples further apart are not integrated."
    )
    action: QuotaAction | None = None

    @field_validator("thresholds")
    @classmethod
    def _sorted(cls, values: list[float]) -> list[float]:
        if not values or any(v <= 0 for v in values):
            raise ValueError("thresholds must be a non-empty list of percentages > 0")
        return sorted(set(values))

    @model_validator(mode="after")
    def _source(self) -> Quota:
        if self.energy_point is None and self.power_point is None:
            raise ValueError("a quota needs energy_point or power_point")
        return self


class RulesSection(StrictModel):
    """On-device alarm rules and energy quotas."""

    enabled: bool = Field(True, description="Off: no rules, no alarm/quota commands.")
    alarms: list[AlarmRule] = Field([], description="Alarm rules (kind defaults to threshold).")
    quotas: list[Quota] = Field([], description="Energy budgets per device or group.")
    status_severity: Severity = Field(
        Severity.MAJOR,
        description="An open alarm of at least this severity puts its device in `alarm`.",
    )
    tick_interval: float = Field(
        1.0, gt=0, le=60,
        description="Seconds between checks of stale/offline rules and of for/clear_for windows.",
    )
    converters: list[str] | None = Field(
        None, description="External alarm sources (event types) to convert; default all."
    )
    checkpoint_interval: float = Field(
        10.0, gt=0, description="Seconds between saves of quota usage (counters lose nothing)."
    )

    @model_validator(mode="before")
    @classmethod
    def _default_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("alarms"), list):
            data = dict(data)
            data["alarms"] = [
                {**r, "kind": "threshold"} if isinstance(r, dict) and "kind" not in r else r
                for r in data["alarms"]
            ]
        return data

    @model_validator(mode="after")
    def _unique_names(self) -> RulesSection:
        for what, names in (("alarm rule", [r.name for r in self.alarms]),
                            ("quota", [q.name for q in self.quotas])):
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"{what} name(s) {sorted(dup)} used twice; names must be unique")
        return self


# --- Cross-checks against the site's devices (run by the loader after validation) ---------

def _is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")


def known_points(device: Any) -> set[str] | None:
    """The point names a device config defines, or None when only the running driver knows
    them (a SunSpec map, OCPP meter values, simulated devices, plugin drivers without
    ``all_points()``)."""
    all_points = getattr(device, "all_points", None)
    if callable(all_points):
        if getattr(device, "profile", None) == "sunspec":
            return None
        return set(all_points())
    groups = getattr(device, "groups", None)  # OPC-UA: points grouped by acquisition mode
    if isinstance(groups, list):
        return {p.name for g in groups for p in getattr(g, "points", ())}
    return None


def _hint(word: str, choices: Iterable[str]) -> str:
    from gateway.config.locate import close_match

    found = close_match(word, sorted(set(choices)))
    return f"; did you mean {found!r}?" if found else ""


Finding = tuple[tuple[Any, ...], str, str]


def _selector_findings(sel: Selector, base: tuple[Any, ...],
                       devices: list[Any]) -> Iterator[Finding]:
    ids = [d.id for d in devices]
    for j, entry in enumerate(sel.devices):
        if not _is_pattern(entry):
            if entry not in ids:
                yield ((*base, "devices", j), f"no device has the id {entry!r}{_hint(entry, ids)}",
                       "error")
        elif not any(fnmatch.fnmatchcase(i, entry) for i in ids):
            yield ((*base, "devices", j), f"the pattern {entry!r} matches no device today",
                   "warning")
    tags = {t for d in devices for t in (getattr(d, "tags", None) or ())}
    for j, tag in enumerate(sel.tags):
        if tag not in tags:
            yield ((*base, "tags", j), f"no device carries the tag {tag!r}{_hint(tag, tags)}",
                   "warning")
    profiles = {p for d in devices if (p := getattr(d, "profile", None))}
    for j, profile in enumerate(sel.profiles):
        if profile not in profiles:
            yield ((*base, "profiles", j),
                   f"no device uses the profile {profile!r}{_hint(profile, profiles)}", "warning")


def _point_findings(sel: Selector, at: tuple[Any, ...], wanted: list[str],
                    devices: list[Any]) -> Iterator[Finding]:
    """A device named by its id must have one of the ``wanted`` points (an error); when the
    selector is deliberately broad (patterns, tags, profiles, or none: every device), at
    least one selected device should have it (a warning: devices may come and go)."""
    what = " or ".join(repr(w) for w in wanted)
    named = [d for d in devices if d.id in sel.devices]
    for device in named:
        points = known_points(device)
        if points is not None and not set(wanted) & points:
            yield (at, f"device {device.id!r} has no point {what}{_hint(wanted[0], points)}",
                   "error")
    if named:
        return
    selected = [(d, known_points(d)) for d in devices if sel.matches(d)]
    if not selected or any(points is None for _, points in selected):
        return  # nothing selected (said above), or a device whose points only its driver knows
    if not any(set(wanted) & points for _, points in selected if points is not None):
        union = {p for _, points in selected if points for p in points}
        yield (at, f"no selected device has point {what}, so this can never fire"
                   f"{_hint(wanted[0], union)}", "warning")


def check_against_devices(config: Any) -> Iterator[Finding]:
    """Rules and quotas against the devices: a device named that does not exist, a point no
    selected device has, a charger to limit that does not exist."""
    rules = getattr(config, "rules", None)
    if not isinstance(rules, RulesSection) or not rules.enabled:
        return
    devices = list(config.devices)
    for i, rule in enumerate(rules.alarms):
        base = ("rules", "alarms", i)
        yield from _selector_findings(rule, base, devices)
        point = getattr(rule, "point", None)
        if point is not None:
            yield from _point_findings(rule, (*base, "point"), [point], devices)
    ids = [d.id for d in devices]
    chargers = [d.id for d in devices
                if d.type == "ocpp" and getattr(d, "role", "charger") == "charger"]
    for i, quota in enumerate(rules.quotas):
        base = ("rules", "quotas", i)
        yield from _selector_findings(quota, base, devices)
        wanted = [p for p in (quota.energy_point, quota.power_point) if p]
        field = "energy_point" if quota.energy_point else "power_point"
        yield from _point_findings(quota, (*base, field), wanted, devices)
        limit = quota.action.limit_charging if quota.action else None
        for j, charger in enumerate(limit.chargers if limit else []):
            if charger not in ids:  # a plugin driver's device may answer ocpp.limit too
                yield ((*base, "action", "limit_charging", "chargers", j),
                       f"no charger has the id {charger!r}{_hint(charger, chargers or ids)}",
                       "error")


register_checker(check_against_devices)
