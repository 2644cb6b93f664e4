"""Which file the daemon runs (the bootstrap file or the managed version), the boot record,
redaction of secrets and the diff summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.loader import load_config
from gateway.confmgmt import boot
from gateway.confmgmt.boot import load_resolved, resolve
from gateway.confmgmt.diff import config_diff, summary
from gateway.confmgmt.versions import VersionStore, redact, text_hash

SITE = """\
gateway:
  id: gw-1
  state_dir: {state}
uplink:
  broker:
    host: 127.0.0.1
    port: 1883
    username: gw-1
    password: ${{MQTT_PASSWORD:-x}}
  commands:
    signing:
      key: literal-hmac-key-123
devices:
{devices}
"""


def site(tmp_path: Path, *devices: str) -> str:
    return SITE.format(state=tmp_path / "state", devices="\n".join(
        f"  - {{id: {d}, type: simulated}}" for d in devices) or "  []")


def test_bootstrap_imported_then_managed_wins_until_the_file_is_edited(tmp_path: Path) -> None:
    bootstrap = tmp_path / "site.yaml"
    bootstrap.write_text(site(tmp_path, "m-1"))
    store = VersionStore(tmp_path / "state")
    assert resolve(bootstrap) == store.current_path
    assert store.current() == 1 and store.text(1) == bootstrap.read_text()
    assert store.path(1).stat().st_mode & 0o777 == 0o600  # it may hold literal secrets
    v2 = store.add(site(tmp_path, "m-1", "m-2"), "test", "devices +1 -0 ~0")
    store.set_current(v2.number)  # what config.apply does
    assert resolve(bootstrap) == store.current_path and store.current() == 2
    assert [d.id for d in load_config(store.current_path).devices] == ["m-1", "m-2"]
    bootstrap.write_text(site(tmp_path, "m-3"))  # edited on the box: the file wins
    resolve(bootstrap)
    assert store.current() == 3 and store.record(3).summary == "devices +1 -2 ~0"
    assert store.state()["good"] == 3


def test_a_version_that_no_longer_loads_goes_back_at_start(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    bootstrap = tmp_path / "site.yaml"
    bootstrap.write_text(site(tmp_path, "m-1"))
    store = VersionStore(tmp_path / "state")
    resolve(bootstrap)
    needs_env = site(tmp_path, "m-1").replace("id: gw-1", "id: ${FG_TEST_GW_ID}")
    store.set_current(store.add(needs_env, "test", "").number)
    monkeypatch.delenv("FG_TEST_GW_ID", raising=False)
    resolve(bootstrap)  # would exit 78, which systemd does not restart
    assert store.current() == 1
    note = store.state()["boot_rollback"]
    assert (note["version"], note["to_version"]) == (2, 1)
    assert "FG_TEST_GW_ID is not set" in note["reason"]


def test_an_invalid_bootstrap_is_run_as_it_is_and_creates_nothing(tmp_path: Path) -> None:
    bootstrap = tmp_path / "site.yaml"
    bootstrap.write_text(site(tmp_path, "m-1").replace("type: simulated", "type: nope"))
    assert resolve(bootstrap) == bootstrap  # load_config then reports it against the file
    assert not (tmp_path / "state").exists()


def test_boot_record_counts_starts_until_ready(tmp_path: Path) -> None:
    bootstrap = tmp_path / "site.yaml"
    bootstrap.write_text(site(tmp_path, "m-1"))
    store = VersionStore(tmp_path / "state")
    resolve(bootstrap)
    store.set_current(store.add(site(tmp_path, "m-1", "m-2"), "test", "").number)
    for starts in (1, 2, 3):
        resolve(bootstrap)
        assert store.boot_record() == {"version": 2, "starts": starts}
    resolve(bootstrap)
    assert store.current() == 1 and store.boot_record() == {"version": 1, "starts": 1}
    assert "3 starts in a row" in store.state()["boot_rollback"]["reason"]


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files ``confmgmt.boot`` loads, in order (a big site's load costs seconds)."""
    loaded: list[Path] = []

    def counting(path: Path) -> object:
        loaded.append(Path(path))
        return load_config(path)

    monkeypatch.setattr(boot, "load_config", counting)
    return loaded


def test_each_start_loads_the_config_once(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    bootstrap = tmp_path / "site.yaml"
    bootstrap.write_text(site(tmp_path, "m-1"))
    store = VersionStore(tmp_path / "state")
    loaded = _count_loads(monkeypatch)
    # first start: the bootstrap is validated before it becomes version 1, and that is it
    path, config = load_resolved(bootstrap)
    assert (path, loaded) == (store.current_path, [bootstrap])
    assert config == load_config(store.current_path)  # the same text, the same config
    # a restart: the version in force, once
    loaded.clear()
    path, config = load_resolved(bootstrap)
    assert (path, loaded) == (store.current_path, [store.current_path])
    assert [d.id for d in config.devices] == ["m-1"]
    # an edited bootstrap: validated once, and it is the new version
    loaded.clear()
    bootstrap.write_text(site(tmp_path, "m-2"))
    path, config = load_resolved(bootstrap)
    assert loaded == [bootstrap] and store.current() == 2
    assert [d.id for d in config.devices] == ["m-2"]
    # a version applied remotely and not yet good: loaded once to check it, and reused
    store.set_current(store.add(site(tmp_path, "m-2", "m-3"), "test", "").number)
    loaded.clear()
    path, config = load_resolved(bootstrap)
    assert loaded == [store.current_path] and store.current() == 3
    assert [d.id for d in config.devices] == ["m-2", "m-3"]
    # reload (starting=False) counts no start, and loads once too
    loaded.clear()
    _, config = load_resolved(bootstrap, starting=False)
    assert loaded == [store.current_path] and len(config.devices) == 2


def test_the_config_of_a_version_put_back_at_start_is_the_good_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bootstrap = tmp_path / "site.yaml"
    bootstrap.write_text(site(tmp_path, "m-1"))
    store = VersionStore(tmp_path / "state")
    load_resolved(bootstrap)
    store.set_current(store.add(site(tmp_path, "m-1", "m-2"), "test", "").number)
    for _ in range(3):
        load_resolved(bootstrap)
    path, config = load_resolved(bootstrap)  # the 4th start: version 1 is back
    assert path == store.current_path and store.current() == 1
    assert [d.id for d in config.devices] == ["m-1"]
    monkeypatch.setenv("FG_TEST_GW_ID", "gw-9")
    needs_env = site(tmp_path, "m-1").replace("id: gw-1", "id: ${FG_TEST_GW_ID}")
    store.set_current(store.add(needs_env, "test", "").number)
    monkeypatch.delenv("FG_TEST_GW_ID")
    path, config = load_resolved(bootstrap)  # version 3 does not load: 1 is back
    assert path == store.current_path and store.current() == 1 and config.gateway.id == "gw-1"


def test_redaction_keeps_references_and_hides_literals(tmp_path: Path) -> None:
    text = site(tmp_path, "m-1")
    shown = redact(text)
    assert "literal-hmac-key-123" not in shown
    assert "key: \"<redacted>\"" in shown
    assert "password: ${MQTT_PASSWORD:-x}" in shown
    assert redact("not: [yaml") == "not: [yaml"
    assert text_hash(text) != text_hash(shown)


def test_diff_names_devices_rules_and_uplink(tmp_path: Path) -> None:
    old = site(tmp_path, "m-1", "m-2")
    new = site(tmp_path, "m-2", "m-3").replace("port: 1883", "port: 8883") \
        + "rules:\n  alarms:\n    - name: hot\n      point: t\n"
    diff = config_diff(old, new)
    assert diff["devices"] == {"added": ["m-3"], "removed": ["m-1"], "changed": []}
    assert diff["uplink"] == ["broker.port"]
    assert diff["rules"]["alarms"]["added"] == ["hot"]
    assert summary(diff) == "devices +1 -1 ~0; rules changed; uplink: broker.port"
    assert "literal-hmac-key-123" not in diff["text"] and "+    - name: hot" in diff["text"]


def test_history_keeps_the_newest_and_the_protected(tmp_path: Path) -> None:
    store = VersionStore(tmp_path / "state", keep=3)
    for n in range(6):
        store.add(site(tmp_path, f"m-{n}"), "test", "")
    store.prune({1})
    assert store.numbers() == [1, 4, 5, 6]
    assert [v.number for v in store.history()] == [6, 5, 4, 1]
