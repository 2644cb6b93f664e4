"""A device's energy meter and the history's counters (see :mod:`gateway.siteops.history`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.rules.quotas import CounterOrPower, CounterTracker, MeterStats, PowerIntegrator
from gateway.siteops.config import EnergySource


class EnergyMeter(CounterOrPower):
    """One device's energy: a counter, and power only while it has delivered no counter."""

    def __init__(self, src: EnergySource, stats: MeterStats) -> None:
        self.src = src
        self.counter = CounterTracker(1000.0 if src.energy_unit == "kWh" else 1.0,
                                      src.counter_max, src.max_power_w, stats)
        self.power = PowerIntegrator(src.max_gap_s, stats)
        self.has_counter = False

    def feed(self, point: str, value: float, ts: int) -> tuple[float, int] | None:
        """(Wh, start of the interval it covers) or None."""
        if point == self.src.energy_point:
            self.has_counter = True
            return self.counter.step(value, ts)
        if point == self.src.power_point and not self.has_counter:
            return self.power.step(value, ts)
        return None


@dataclass
class HistoryStats:
    folded_seq: int = 0
    horizon: int = 0
    replay_seq: int = 0
    open_samples: int = 0
    est_rows: int = 0
    dropped_rows: int = 0
    lost_samples: int = 0
    flushes: int = 0
    flush_s: float = 0.0
    meters: MeterStats = field(default_factory=MeterStats)
