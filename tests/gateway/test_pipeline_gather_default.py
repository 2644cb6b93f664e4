"""``pipeline.commit_gather`` left unset: 0.25 s on a site of 10 devices or more (one commit
per polling cycle), off below; a value in the site file wins either way."""

from __future__ import annotations

from pathlib import Path

import yaml

from gateway.config.loader import load_config
from gateway.runtime import GATHER_FROM_DEVICES, App, commit_gather


def test_the_default_follows_the_device_count() -> None:
    assert GATHER_FROM_DEVICES == 10
    assert commit_gather(None, 9) == 0.0
    assert commit_gather(None, 10) == 0.25
    assert commit_gather(0.0, 500) == 0.0
    assert commit_gather(1.5, 1) == 1.5


def site(tmp_path: Path, devices: int, pipeline: dict[str, float] | None = None) -> App:
    doc: dict[str, object] = {
        "gateway": {"id": "q", "state_dir": str(tmp_path / "state")},
        "devices": [{"id": f"s{i}", "type": "simulated"} for i in range(devices)],
    }
    if pipeline is not None:
        doc["pipeline"] = pipeline
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    return App(load_config(path), path)


def test_the_app_gathers_from_ten_devices(tmp_path: Path) -> None:
    assert site(tmp_path, 9).pipeline.commit_gather == 0
    assert site(tmp_path, 10).pipeline.commit_gather == 0.25
    assert site(tmp_path, 10, {"commit_gather": 0}).pipeline.commit_gather == 0
    assert site(tmp_path, 2, {"commit_gather": 0.5}).pipeline.commit_gather == 0.5
