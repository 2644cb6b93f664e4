"""A big site loads its config fast and keeps little of it (issue 15): measured on a generated
site, against the pure-Python YAML parser on the same machine (so the machine's load cancels
out) and with tracemalloc (deterministic)."""

from __future__ import annotations

import gc
import time
import tracemalloc
from pathlib import Path

import yaml

from bench.config_load import site_yaml
from gateway.config.loader import load_config
from gateway.config.site import site_model

DEVICES, POINTS = 16, 125  # 2,000 points: the figures per point are those of 25,000


def _site(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(site_yaml(DEVICES, POINTS, tmp_path / "state"))
    return path


def test_loading_costs_less_cpu_than_parsing_alone_in_python(tmp_path: Path) -> None:
    path = _site(tmp_path)
    text = path.read_text()
    site_model()
    load_config(path)  # warm: imports, the model, profile caches

    def cpu(fn: object) -> float:
        runs = []
        for _ in range(2):
            started = time.process_time()
            fn()  # type: ignore[operator]
            runs.append(time.process_time() - started)
        return min(runs)

    parse_only = cpu(lambda: yaml.load(text, Loader=yaml.SafeLoader))
    whole_load = cpu(lambda: load_config(path))
    # Before: the whole load was the pure-Python parse plus checks and validation (> 1x).
    assert whole_load < 0.5 * parse_only, (whole_load, parse_only)


def test_loading_keeps_under_300_bytes_per_point(tmp_path: Path) -> None:
    path = _site(tmp_path)
    site_model()
    load_config(path)
    gc.collect()
    tracemalloc.start()
    try:
        config = load_config(path)
        gc.collect()
        retained, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    points = sum(len(d.points) for d in config.devices)  # type: ignore[attr-defined]
    assert points == DEVICES * POINTS
    # Before: about 1,600 bytes kept and 8,300 at the peak per point; then (points as
    # pydantic models) about 700 kept and 1,000 at the peak; now (slotted dataclasses)
    # under 200 kept and 500 at the peak.
    assert retained / points < 300, retained / points
    assert peak / points < 800, peak / points


def test_shared_field_name_sets_never_change_under_another_model() -> None:
    from drivers.modbus.config import AddressRange

    a = AddressRange.model_validate({"start": 1, "end": 2})
    b = AddressRange.model_validate({"start": 3, "end": 4})
    assert a.model_fields_set is b.model_fields_set  # shared: that is the saving
    c = a.model_copy(update={"function": "coil"})
    assert c.model_fields_set == {"start", "end", "function"}
    assert a.model_fields_set == b.model_fields_set == {"start", "end"}


def test_devices_listing_the_same_map_share_its_point_objects(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    state = tmp_path / "state"
    meter = ("    points:\n"
             "      - {name: volts, address: 0, scale: 0.1, unit: V}\n"
             "      - {name: state, address: 1, enum: {0: stopped, 1: on-grid}}\n")
    other = ("    points:\n"
             "      - {name: volts, address: 0, scale: 0.01, unit: V}\n"
             "      - {name: state, address: 1, enum: {0: stopped, 1: running}}\n")
    path.write_text(
        f"gateway: {{id: g, state_dir: {state}}}\ndevices:\n"
        + "".join(f"  - id: m{i}\n    type: modbus\n    host: 10.0.0.{i}\n{meter}"
                  for i in range(3))
        + f"  - id: other\n    type: modbus\n    host: 10.0.0.9\n{other}")
    config = load_config(path)
    m0, m1, m2, odd = config.devices
    for a, b in zip(m0.points, m1.points, strict=True):  # type: ignore[attr-defined]
        assert a is b  # one object for the three meters
    assert m2.points[1] is m0.points[1]  # type: ignore[attr-defined]
    volts, state_ = odd.points  # type: ignore[attr-defined]
    assert volts.scale == 0.01 and volts is not m0.points[0]  # type: ignore[attr-defined]
    assert state_.enum == {0: "stopped", 1: "running"}  # a different enum is not shared
    assert state_ is not m0.points[1]  # type: ignore[attr-defined]
    assert m0.points[1].enum == {0: "stopped", 1: "on-grid"}  # type: ignore[attr-defined]
