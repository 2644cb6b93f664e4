"""`-c FILE` wherever a person types it (issue 16, item 5)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.daemon import fieldgate


def test_check_config_takes_the_file_positionally_or_with_c(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump({"gateway": {"id": "gw", "state_dir": str(tmp_path)},
                                   "devices": [{"id": "m", "type": "simulated"}]}))
    for args in (["check-config", str(cfg)], ["check-config", "-c", str(cfg)],
                 ["-c", str(cfg), "check-config"], ["--config", str(cfg), "check-config"]):
        done = fieldgate(*args)
        assert done.returncode == 0, (args, done.stderr)
        assert "ok (1 device)" in done.stdout
    other = tmp_path / "other.yaml"
    twice = fieldgate("check-config", str(cfg), "-c", str(other))
    assert twice.returncode == 2 and "once" in twice.stderr


def test_c_before_the_command_reaches_it(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump({"gateway": {"id": "gw", "state_dir": str(tmp_path / "s")},
                                   "devices": []}))
    # No daemon runs: the message names this file's state directory, so -c reached `cmd`.
    done = fieldgate("-c", str(cfg), "cmd", "ping")
    assert done.returncode == 1
    assert str(tmp_path / "s") in done.stderr
