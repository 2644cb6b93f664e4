"""Config errors name file, line, column and field path; exit code 78; nothing leaks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config.errors import EX_CONFIG, ConfigError
from gateway.config.loader import load_config
from gateway.config.site import json_schema

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
gateway:
  id: site-1
  timezone: Europe/Berlin
  state_dir: {state}
store:
  max_bytes: 50000000
devices:
  - id: meter-1
    type: simulated
    interval: 1
  - id: pv-1
    type: simulated
    kind: inverter
"""



def fill(text: str, state: Path) -> str:
    return text.replace("{state}", str(state))


# (name, yaml text, expected "line:col path: message fragment")
BROKEN = [
    ("negative interval", GOOD.replace("interval: 1", "interval: -2"),
     "site.yaml:10:15 devices[0].interval: must be greater than 0"),
    ("unknown top-level key", GOOD + "uplnk: {}\n",
     "site.yaml:14:1 uplnk: unknown key (check the spelling)"),
    ("unknown device key", GOOD.replace("    interval: 1", "    intervall: 1"),
     "site.yaml:10:5 devices[0].intervall: unknown key"),
    ("missing gateway id", GOOD.replace("  id: site-1\n", ""),
     "site.yaml:2:3 gateway.id: is required"),
    ("bad timezone", GOOD.replace("Europe/Berlin", "Mars/Olympus"),
     "site.yaml:3:13 gateway.timezone: unknown timezone 'Mars/Olympus'"),
    ("unknown device type", GOOD.replace("type: simulated\n    kind", "type: modbsu\n    kind"),
     "site.yaml:12:11 devices[1].type: unknown device type 'modbsu'; known types:"),
    ("device without type", GOOD.replace("    type: simulated\n    interval: 1\n",
                                         "    interval: 1\n"),
     "site.yaml:8:5 devices[0].type: is required"),
    ("duplicate device ids", GOOD.replace("id: pv-1", "id: meter-1"),
     "site.yaml:11:9 devices[1].id: device id 'meter-1' is already used by devices[0]"),
    ("store too small", GOOD.replace("50000000", "10"),
     "site.yaml:6:14 store.max_bytes: must be greater than 1000000"),
    ("bad enum", GOOD.replace("kind: inverter", "kind: battery"),
     "site.yaml:13:11 devices[1].kind: must be 'meter' or 'inverter'"),
    ("bad durability", GOOD.replace("store:\n", "store:\n  durability: extreme\n"),
     "site.yaml:6:15 store.durability: must be 'normal' or 'full'"),
    ("duplicate yaml key", GOOD.replace("  timezone: Europe/Berlin\n",
                                        "  timezone: Europe/Berlin\n  timezone: UTC\n"),
     "site.yaml:4:3 gateway.timezone: duplicate key"),
    ("bad device id", GOOD.replace("id: pv-1", "id: 'pv 1!'"),
     "site.yaml:11:9 devices[1].id: must match pattern"),
    ("missing env var", GOOD.replace("id: site-1", "id: ${FIELDGATE_TEST_UNSET_VAR}"),
     "site.yaml:2:7 gateway.id: environment variable FIELDGATE_TEST_UNSET_VAR is not set"),
    ("wrong type", GOOD.replace("interval: 1", "interval: fast"),
     "site.yaml:10:15 devices[0].interval: must be a valid number"),
    ("invalid yaml", GOOD.replace("  - id: pv-1", "  - id: [pv-1"),
     "site.yaml:12:9 invalid YAML: expected ',' or ']'"),
]


@pytest.mark.parametrize(("name", "text", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_names_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, expected: str
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(fill(text, tmp_path / "state"))
    assert main(["check-config", str(path)]) == EX_CONFIG
    err = capsys.readouterr().err
    assert expected in err, f"{name}: {err}"
    assert not (tmp_path / "state").exists(), "nothing may be touched on a config error"


def test_all_errors_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("interval: 1", "interval: 0").replace("kind: inverter", "kind: x")
    path = tmp_path / "site.yaml"
    path.write_text(fill(text, tmp_path))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    paths = [i.path for i in info.value.issues]
    assert paths == ["devices[0].interval", "devices[1].kind"]


def test_env_substitution_and_secret_never_in_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FG_SITE", "site-from-env")
    monkeypatch.setenv("FG_SECRET", "hunter2-very-secret")
    text = GOOD.replace("id: site-1", "id: ${FG_SITE}").replace(
        "interval: 1", "interval: ${FG_SECRET}")
    path = tmp_path / "site.yaml"
    path.write_text(fill(text, tmp_path))
    assert main(["check-config", str(path)]) == EX_CONFIG
    err = capsys.readouterr().err
    assert "devices[0].interval" in err
    assert "hunter2" not in err
    path.write_text(fill(GOOD.replace("id: site-1", "id: ${FG_SITE}"), tmp_path))
    assert load_config(path).gateway.id == "site-from-env"
    path.write_text(fill(GOOD.replace("id: site-1", "id: ${FG_NOPE:-fallback}"), tmp_path))
    assert load_config(path).gateway.id == "fallback"


def test_exit_code_78_from_the_process(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(fill(GOOD.replace("interval: 1", "interval: -1"), tmp_path / "s"))
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "run", "-c", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 78
    assert "site.yaml:10:15 devices[0].interval: must be greater than 0" in proc.stderr
    assert not (tmp_path / "s").exists()


def test_demo_config_is_valid() -> None:
    config = load_config(ROOT / "config" / "demo.yaml")
    assert config.devices


def test_committed_schema_is_current() -> None:
    # A fresh process, so drivers that other tests register do not leak into the schema.
    proc = subprocess.run([sys.executable, "-m", "gateway", "schema"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    committed = json.loads((ROOT / "config" / "schema.json").read_text())
    assert committed == json.loads(proc.stdout), (
        "config/schema.json is stale: run `fieldgate schema -o config/schema.json`"
    )


def test_schema_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == json_schema()
    assert "devices" in schema["properties"]
