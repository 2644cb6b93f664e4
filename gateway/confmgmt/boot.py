"""Which config the daemon runs, decided at every start and every ``reload``.

The bootstrap file (``fieldgate run -c /etc/fieldgate/site.yaml``) names the state directory;
the managed versions live in ``<state_dir>/config``. The managed version in force wins, with
one exception: a bootstrap file whose text changed since it was last imported (someone edited
it on the box) becomes a new version and wins. At a start, the boot record counts the starts
of the version in force that never reached ready; after three in a row the last good version
is put back before the config is even loaded.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import yaml

from gateway.config.errors import ConfigError
from gateway.config.loader import load_config
from gateway.confmgmt.versions import VersionStore, text_hash
from gateway.errors import StartupError
from gateway.store.errors import StoreError
from gateway.store.opening import ensure_dir

log = logging.getLogger(__name__)

#: Starts in a row that never reached ready before the last good version is put back.
CRASH_LIMIT = 3
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DEFAULT_STATE_DIR = "/var/lib/fieldgate"


def state_dir_of(text: str) -> Path | None:
    """``gateway.state_dir`` read from raw YAML (``${VAR}`` substituted), None if unreadable."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    gateway = data.get("gateway") if isinstance(data, dict) else None
    if not isinstance(gateway, dict):
        return None
    raw = gateway.get("state_dir", _DEFAULT_STATE_DIR)
    if not isinstance(raw, str):
        return None
    value = _ENV.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), raw)
    return Path(value) if value else None


def resolve(bootstrap: Path, *, starting: bool = True) -> Path:
    """The file to load: ``<state_dir>/config/current.yaml`` when managed versions can be
    kept, else ``bootstrap`` itself. ``starting``: count this start in the boot record."""
    try:
        text = bootstrap.read_text(encoding="utf-8")
    except OSError:
        return bootstrap  # load_config says what is wrong with it
    state_dir = state_dir_of(text)
    if state_dir is None:
        return bootstrap
    store = VersionStore(state_dir)
    current = store.current()
    changed = current is None or store.state().get("bootstrap_hash") != text_hash(text)
    if changed:
        try:
            load_config(bootstrap)  # an invalid file is reported against itself, and no
        except (ConfigError, StartupError):  # state directory is created for it
            return bootstrap
    try:
        ensure_dir(state_dir, "state directory")  # the mode the runtime gives it
    except StoreError:
        return bootstrap  # the runtime says so in one line, with its exit code
    try:
        store.ensure()
    except (OSError, StoreError) as err:
        log.warning("config: cannot keep config versions in %s (%s); running %s as it is "
                    "(no config.apply)", store.root, getattr(err, "strerror", err), bootstrap)
        return bootstrap
    if changed:
        line = "imported" if current is None else _diff_line(store.text(current), text)
        version = store.add(text, f"bootstrap file {bootstrap}", line)
        store.set_current(version.number)  # first the pointer: a crash imports it again
        store.update_state(pending=None, good=version.number, bootstrap_hash=text_hash(text))
        if current is not None:
            log.warning("config: %s changed since it was imported; it wins as version %d "
                        "(%s)", bootstrap, version.number, line)
        current = version.number
    if starting and current is not None:
        _count_start(store, current)
    return store.current_path


def _diff_line(old: str, new: str) -> str:
    from gateway.confmgmt.diff import config_diff, summary  # difflib: only for an edited file

    return summary(config_diff(old, new))


def _count_start(store: VersionStore, current: int) -> None:
    record = store.boot_record()
    starts = int(record.get("starts", 0)) if record.get("version") == current else 0
    good = store.state().get("good")
    if starts >= CRASH_LIMIT and isinstance(good, int) and good != current \
            and good in store.numbers():
        reason = (f"version {current} did not reach ready in {starts} starts in a row; "
                  f"version {good}, the last good one, is back in force")
        log.error("config: %s", reason)
        store.set_current(good)
        store.update_state(pending=None, boot_rollback={
            "version": current, "to_version": good, "hash": store.record(good).hash,
            "reason": reason, "source": "boot record"})
        current, starts = good, 0
    elif isinstance(good, int) and good != current and good in store.numbers():
        try:  # exit 78 is not restarted by systemd: a version that cannot load goes now
            load_config(store.current_path)
        except (ConfigError, StartupError) as err:
            reason = (f"version {current} does not load ({err}); version {good}, the last "
                      f"good one, is back in force")
            log.error("config: %s", reason)
            store.set_current(good)
            store.update_state(pending=None, boot_rollback={
                "version": current, "to_version": good, "hash": store.record(good).hash,
                "reason": reason, "source": "boot record"})
            current, starts = good, 0
    store.write_boot_record(current, starts + 1)
