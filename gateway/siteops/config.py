"""The ``siteops:`` config section: history, inspections, reports, KPIs and the tariff."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from datetime import time
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.base import PositiveSeconds, StrictModel
from gateway.config.site import Finding, register_checker


class EnergySource(StrictModel):
    """Where a device's energy comes from: a cumulative counter, else integrated power
    (the same rules as the quotas: resets, rollover, implausible jumps and gaps)."""

    devices: list[str] = Field(["*"], description="Device ids or globs (fnmatch).")
    energy_point: str | None = Field("energy_wh", description="Cumulative energy counter.")
    energy_unit: Literal["Wh", "kWh"] = "Wh"
    counter_max: float | None = Field(None, gt=0, description="Counter rollover value.")
    power_point: str | None = Field(
        None, description="Power (W) to integrate for devices that deliver no counter.")
    max_power_w: float | None = Field(
        None, gt=0, description="Plausibility: a counter jump above max_power * dt is dropped.")
    max_gap_s: float = Field(300, gt=0, description="Power samples further apart are not "
                                                    "integrated.")

    def matches(self, device: str) -> bool:
        return any(fnmatch.fnmatchcase(device, p) for p in self.devices)


class HistoryConfig(StrictModel):
    enabled: bool = True
    minute_days: float = Field(7, gt=0, description="Days the 1-minute rollups are kept.")
    days: float = Field(400, gt=0, description="Days the 15-minute rollups and energy are kept.")
    max_bytes: int = Field(
        1_000_000_000, gt=100_000,
        description="Cap of the history tables (estimated); the oldest rows go first.")
    flush_interval: float = Field(
        10, gt=0, le=300, description="Seconds between commits of the rollups.")
    points: list[str] = Field(
        ["*"], description="Which `device.point` names are kept (fnmatch globs).")
    energy: list[EnergySource] = Field(
        [], description="Energy per device per 15 minutes; the first matching entry wins.")

    def keeps(self, device: str, point: str) -> bool:
        if self.points == ["*"]:
            return True
        name = f"{device}.{point}"
        return any(fnmatch.fnmatchcase(name, p) for p in self.points)


class ChecklistItem(StrictModel):
    id: str = Field(min_length=1, max_length=64)
    question: str = Field(min_length=1)
    expect: Any = Field(None, description="The expected answer (equality), if any.")
    min: float | None = None
    max: float | None = None
    work_order: bool = Field(
        True, description="An answer out of range opens a work order for the device.")


class InspectionPlan(StrictModel):
    name: str = Field(min_length=1, max_length=128)
    devices: list[str] = Field([], description="Device ids or globs; with tags: AND.")
    tags: list[str] = Field([], description="Devices carrying one of these tags.")
    site: bool = Field(False, description="One inspection of the whole site, not per device.")
    every_days: float = Field(gt=0, description="Due this many days after the last one.")
    checklist: list[ChecklistItem] = Field(min_length=1)
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    assignee: str | None = None

    @model_validator(mode="after")
    def _scope(self) -> InspectionPlan:
        if not self.site and not self.devices and not self.tags:
            raise ValueError(f"inspection plan {self.name!r}: give devices, tags or site: true")
        return self


class ReportTargets(StrictModel):
    """The delivery targets of one report."""

    uplink: bool = Field(True, description="Publish it over the uplink (when one is "
                                           "configured).")
    webhook: str | None = Field(
        None, description="Post each file to this `channels.targets` entry (type webhook), "
                          "retried until `delivery.give_up_after`.")


class ReportDef(StrictModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    period: Literal["daily", "weekly", "monthly"]
    include: list[Literal["energy", "alarms", "availability", "charging"]] = Field(
        ["energy", "alarms", "availability", "charging"])
    html: bool = Field(True, description="Also write an HTML report with an SVG chart.")
    deliver: ReportTargets | None = Field(
        None, description="Where this report goes. When given it replaces "
                          "`delivery.uplink` and `delivery.webhook` for this report.")


class ReportDelivery(StrictModel):
    """Publishing each generated report over the uplink (topic ``<base>/report``): a file
    up to ``inline_max_bytes`` in one message, a larger one in chunks of ``chunk_bytes``;
    every message carries the sha256 of the whole file. Queued in the store with the
    report's record, so an outage delays it and loses nothing. And/or posting its files to
    a webhook channel (:mod:`gateway.siteops.webhook`), retried until ``give_up_after``."""

    uplink: bool = Field(True, description="Publish reports over the uplink (when one is "
                                           "configured).")
    files: Literal["csv", "all"] = Field("all", description="csv: only the CSV; all: the "
                                                          "HTML page too.")
    inline_max_bytes: int = Field(65_536, ge=256, le=8_000_000)
    chunk_bytes: int = Field(65_536, ge=256, le=8_000_000)
    webhook: str | None = Field(
        None, description="Post every report's files to this `channels.targets` entry "
                          "(type webhook); a report's own `deliver` overrides it.")
    retry_initial: PositiveSeconds = Field(
        10.0, description="Webhook: first retry delay after a network error, a 5xx, "
                          "408 or 429, seconds (doubling, jittered).")
    retry_max: PositiveSeconds = Field(900.0, description="Webhook: longest retry delay, "
                                                          "seconds.")
    give_up_after: PositiveSeconds = Field(
        172_800.0, description="Webhook: seconds after the report was generated when a "
                               "delivery still failing is given up (report_delivery_failed).")

    def targets(self, report: ReportDef) -> ReportTargets:
        """Where ``report`` goes: its own ``deliver``, else these defaults."""
        if report.deliver is not None:
            return report.deliver
        return ReportTargets(uplink=self.uplink, webhook=self.webhook)


class ReportsConfig(StrictModel):
    definitions: list[ReportDef] = []
    retention_days: float = Field(90, gt=0, description="Report files older are deleted.")
    delivery: ReportDelivery = ReportDelivery()


class TariffPeriod(StrictModel):
    name: str = Field(min_length=1)
    start: time = Field(description="Local start time (HH:MM), inclusive.")
    end: time = Field(description="Local end time (HH:MM), exclusive; 00:00 is midnight.")
    price_per_kwh: float = Field(ge=0)
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"])


class Tariff(StrictModel):
    currency: str = "EUR"
    default_price_per_kwh: float = Field(ge=0)
    periods: list[TariffPeriod] = []


class KpiConfig(StrictModel):
    grid_meter: str | None = Field(None, description="Device metering the grid connection.")
    import_point: str = Field("energy_import_wh", description="Its import counter.")
    export_point: str = Field("energy_export_wh", description="Its export counter.")
    power_point: str = Field("power_w", description="Its power (W), for peak demand.")
    pv: list[str] = Field([], description="PV inverters (ids or globs).")
    chargers: list[str] = Field([], description="Chargers (ids or globs).")
    daily_message: bool = Field(
        True, description="Publish the finished day's KPIs over the uplink (topic "
                          "`<base>/kpis`) just after local midnight.")


class SiteOpsSection(StrictModel):
    enabled: bool = True
    history: HistoryConfig = HistoryConfig()
    inspections: list[InspectionPlan] = []
    reports: ReportsConfig = ReportsConfig()
    kpis: KpiConfig = KpiConfig()
    tariff: Tariff | None = None

    @field_validator("inspections")
    @classmethod
    def _unique_plans(cls, plans: list[InspectionPlan]) -> list[InspectionPlan]:
        names = [p.name for p in plans]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"inspection plan names must be unique: {sorted(dup)}")
        return plans


def check_report_channels(config: Any) -> Iterator[Finding]:
    """A report's webhook must name a configured channel of type webhook (the one that
    takes a file; a chat robot does not)."""
    section = getattr(config, "siteops", None)
    if not isinstance(section, SiteOpsSection) or not section.enabled:
        return
    channels = getattr(config, "channels", None)
    targets = dict(getattr(channels, "targets", None) or {})
    webhooks = sorted(n for n, t in targets.items() if t.type == "webhook")
    reports = section.reports
    named: list[tuple[tuple[Any, ...], str]] = []
    if reports.delivery.webhook is not None:
        named.append((("siteops", "reports", "delivery", "webhook"), reports.delivery.webhook))
    for i, d in enumerate(reports.definitions):
        if d.deliver is not None and d.deliver.webhook is not None:
            named.append((("siteops", "reports", "definitions", i, "deliver", "webhook"),
                          d.deliver.webhook))
    for loc, name in named:
        target = targets.get(name)
        if target is None:
            yield (loc, f"no channel {name!r} in channels.targets (webhook channels: "
                        f"{', '.join(webhooks) or 'none'}); add it there", "error")
        elif target.type != "webhook":
            yield (loc, f"channel {name!r} is of type {target.type}; reports are posted "
                        "only to a channel of type webhook", "error")


register_checker(check_report_channels)
