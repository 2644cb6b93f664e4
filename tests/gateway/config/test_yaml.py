"""What the fast YAML path must keep doing: anchors, aliases and merge keys, typed scalars,
integer keys, ${ENV} in aliased values, and the same data as PyYAML's own loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.config.loader import load_config
from gateway.config.yamlread import build

from .cases import write

TEMPLATED = """\
gateway:
  id: site-1
  state_dir: {state}
devices:
  - &meter
    id: m0
    type: modbus
    host: ${FG_TEST_HOST:-127.0.0.1}
    interval: 2.5
    enabled: yes
    tags: [~, null, 1e3, 0x1F, "007", 2026-01-01]
    points: &points
      - {name: power, address: 0, type: float32, scale: 0.1}
      - {name: state, address: 2, enum: {0: ok, 1: fault}}
  - <<: *meter
    id: m1
    tags: []
  - <<: [*meter]
    id: m2
    interval: 1
    tags: []
    points: *points
"""


def test_same_data_as_pyyaml(tmp_path: Path) -> None:
    path = write(tmp_path, TEMPLATED)
    text = path.read_text()
    data, issues = build(text, path, lambda value, loc: value)
    assert issues == []
    assert data == yaml.safe_load(text)


def test_anchors_and_merge_keys_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FG_TEST_HOST", "10.0.0.7")
    config = load_config(write(tmp_path, TEMPLATED.replace("    tags: [~, null, 1e3, 0x1F, "
                                                           '"007", 2026-01-01]\n', "")))
    m0, m1, m2 = config.devices
    assert [m0.id, m1.id, m2.id] == ["m0", "m1", "m2"]
    assert m1.host == "10.0.0.7" and m1.interval == 2.5  # type: ignore[attr-defined]
    assert m2.interval == 1  # type: ignore[attr-defined]
    assert m2.all_points()["state"].enum == {0: "ok", 1: "fault"}  # type: ignore[attr-defined]
