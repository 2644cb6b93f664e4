"""A simulated meter or inverter with plausible values, for the demo site and benchmarks.

A meter follows a daily load curve with noise; an inverter follows a clear-sky solar curve.
Energy registers integrate the power, so they only ever increase, like a real counter.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from time import monotonic
from typing import Literal

from pydantic import Field

from drivers.base import (
    DeviceConfig,
    Driver,
    DriverContext,
    NotWritable,
    TaskFactory,
    UnknownPoint,
    WriteFailed,
    WriteResult,
)
from gateway.model import DeviceStatus, Sample, Value


class SimulatedDevice(DeviceConfig):
    type: Literal["simulated"]
    kind: Literal["meter", "inverter"] = Field("meter", description="What to imitate.")
    interval: float = Field(1.0, gt=0, description="Seconds between samples.")
    rated_power_w: float = Field(10_000.0, gt=0, description="Peak power of the curve.")
    extra_points: int = Field(
        0, ge=0, le=100_000, description="Additional synthetic points (for benchmarks)."
    )
    extra_values: Literal["shared", "decimals", "floats"] = Field(
        "shared",
        description=(
            "Values of the extra points. shared: one random number per tick plus the point's "
            "index, so every value of a tick has the same fractional digits (cheap, but it "
            "flatters compression). decimals: independent random values with 1 to 3 decimals "
            "(fixed per point) and magnitudes from 10 to 100,000, like scaled registers. "
            "floats: independent random floats with all their digits."
        ),
    )
    seed: int | None = Field(None, description="Fix the noise for repeatable runs.")


_DAY_S = 86_400
#: The points every simulated device reports (read-only), and the one it accepts writes on.
POINTS = ("power_w", "voltage_v", "current_a", "frequency_hz", "energy_wh")
WRITABLE = "power_limit_w"


class _Model:
    """The state of one simulated device."""

    def __init__(self, cfg: SimulatedDevice) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.energy_wh = self.rng.uniform(1_000, 100_000)
        self.setpoint: float | None = None
        self.extra = [f"sim_{i:05d}" for i in range(cfg.extra_points)]
        # Per extra point: its scale (10 .. 100,000) and decimals (1 .. 3).
        self.shape = [(10.0 ** (1 + i % 5), 1 + (i * 7 // 5) % 3) for i in range(cfg.extra_points)]

    def reports(self, point: str) -> bool:
        """Whether ``point`` is one this device reports (a fixed or an extra point)."""
        if point in POINTS:
            return True
        digits = point[4:]
        return (point.startswith("sim_") and len(digits) == 5 and digits.isdigit()
                and int(digits) < self.cfg.extra_points)

    def extra_values(self) -> list[Value]:
        """One value per extra point, of the kind ``extra_values`` asks for."""
        kind, rng = self.cfg.extra_values, self.rng
        if kind == "decimals":
            return [round(rng.uniform(0, scale), dec) for scale, dec in self.shape]
        if kind == "floats":
            return [rng.uniform(0, scale) for scale, _dec in self.shape]
        rnd = rng.random() * 100
        return [rnd + i for i in range(len(self.extra))]

    def values(self, ts_ms: int, dt_s: float) -> dict[str, Value]:
        day_frac = (ts_ms / 1000 % _DAY_S) / _DAY_S
        rated = self.cfg.rated_power_w
        if self.cfg.kind == "inverter":
            sun = max(0.0, math.sin(math.pi * (day_frac - 0.25) * 2))
            power = rated * sun * self.rng.uniform(0.9, 1.0)
            if self.setpoint is not None:
                power = min(power, self.setpoint)
        else:
            base = 0.35 + 0.25 * math.sin(2 * math.pi * (day_frac - 0.3))
            power = rated * max(0.05, base + self.rng.gauss(0, 0.03))
        self.energy_wh += power * dt_s / 3600
        voltage = 230.0 + self.rng.gauss(0, 1.5)
        return {
            "power_w": round(power, 1),
            "voltage_v": round(voltage, 2),
            "current_a": round(power / voltage, 3),
            "frequency_hz": round(50.0 + self.rng.gauss(0, 0.02), 3),
            "energy_wh": round(self.energy_wh, 1),
        }


class SimulatedDriver(Driver):
    def __init__(self, devices: Sequence[SimulatedDevice], ctx: DriverContext) -> None:
        super().__init__(devices, ctx)
        self.models = {d.id: _Model(d) for d in devices}

    def tasks(self) -> Iterable[tuple[str, TaskFactory]]:
        for device_id in self.models:
            yield f"sim[{device_id}]", self._factory(device_id)

    def _factory(self, device_id: str) -> TaskFactory:
        async def run() -> None:
            await self._run(device_id)

        return run

    async def _run(self, device_id: str) -> None:
        model = self.models[device_id]
        clock = self.ctx.clock
        interval = model.cfg.interval
        stats = self.ctx.poll_stats(device_id)  # each tick is one poll, always answered
        self.ctx.set_status(device_id, DeviceStatus.ONLINE)
        next_tick = clock.monotonic()
        while True:
            started = monotonic()
            ts = clock.now_ms()
            values = model.values(ts, interval)
            batch = [Sample(device_id, point, ts, value) for point, value in values.items()]
            if model.extra:
                batch.extend(Sample(device_id, p, ts, v)
                             for p, v in zip(model.extra, model.extra_values(), strict=True))
            stats.ok(monotonic() - started)
            await self.ctx.emit(batch)
            next_tick += interval
            delay = next_tick - clock.monotonic()
            if delay < -interval:  # fell behind (backpressure): do not try to catch up
                next_tick = clock.monotonic()
                delay = 0
            await clock.sleep(max(0.0, delay))

    async def write(self, device: str, point: str, value: Value) -> WriteResult | Value:
        model = self.models.get(device)
        if model is None:
            raise UnknownPoint(device, "no such simulated device")
        if point != WRITABLE:
            if model.reports(point):
                raise NotWritable(device, f"point {point!r} is read-only; the only writable "
                                          f"point of a simulated device is {WRITABLE}")
            raise UnknownPoint(device, f"no point {point!r}; a simulated device has "
                                       f"{', '.join(POINTS)} and {WRITABLE} (writable)")
        if isinstance(value, (str, bool)) or value is None:
            raise WriteFailed(device, f"{WRITABLE} takes a number of watts, not {value!r}")
        model.setpoint = float(value)
        return model.setpoint
