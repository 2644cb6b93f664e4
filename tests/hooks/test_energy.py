"""``energy_increments``: counter readings become the energy since the previous reading."""

from __future__ import annotations

from hooks.energy import Increments
from hooks.models import DataPoint


def _dp(point: str, value: object, seq: int, device: str = "m1",
        quality: str = "good") -> DataPoint:
    return DataPoint(device, point, 1000 * seq, value, quality, seq)


def test_increments_per_device_and_point() -> None:
    inc = Increments(["energy*"])
    readings = [_dp("energy_wh", 100.0, 1), _dp("energy_wh", 50.0, 2, device="m2"),
                _dp("power_w", 7.5, 3), _dp("energy_wh", 102.5, 4),
                _dp("energy_wh", 53.0, 5, device="m2"), _dp("energy_wh", 104.0, 6)]
    out = [inc.apply(dp) for dp in readings]
    # The first reading of each counter is the baseline; power passes unchanged.
    assert out[0] is None and out[1] is None
    assert out[2] == readings[2]
    assert [(d.device, d.value, d.seq) for d in out[3:] if d is not None] == [
        ("m1", 2.5, 4), ("m2", 3.0, 5), ("m1", 1.5, 6)]


def test_a_counter_going_back_is_a_new_baseline_and_bad_readings_are_skipped() -> None:
    inc = Increments(["energy_import", "energy_export"])
    assert inc.apply(_dp("energy_import", 5000, 1)) is None
    assert inc.apply(_dp("energy_import", 12, 2)) is None  # meter replaced: no -4988
    assert inc.resets == 1
    assert inc.apply(_dp("energy_import", 20, 3)).value == 8  # type: ignore[union-attr]
    assert inc.apply(_dp("energy_import", 25, 4, quality="bad")) is None
    assert inc.apply(_dp("energy_import", "n/a", 5)) is None
    assert inc.apply(_dp("energy_import", 30, 6)).value == 10  # type: ignore[union-attr]
    assert inc.apply(_dp("energy_total", 1, 7)).value == 1  # type: ignore[union-attr]
