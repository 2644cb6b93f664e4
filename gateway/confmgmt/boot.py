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
from typing import Any

import yaml

from gateway.config.errors import ConfigError
from gateway.config.loader import load_config
from gateway.config.site import SiteConfig
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
        gateway = _gateway_section(text)
    except yaml.YAMLError:
        return None
    return _state_dir(gateway)


def _state_dir(gateway: Any) -> Path | None:
    """``state_dir`` of a ``gateway`` section (``${VAR}`` substituted), None if unusable."""
    if not isinstance(gateway, dict):
        return None
    raw = gateway.get("state_dir", _DEFAULT_STATE_DIR)
    if not isinstance(raw, str):
        return None
    value = _ENV.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), raw)
    return Path(value) if value else None


_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_END = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _gateway_section(text: str) -> Any:
    """The top-level ``gateway`` value of a YAML document, read without building the rest.

    A big site's file is megabytes of devices; building all of it here (pure-Python
    ``safe_load``) cost more CPU and memory than the real config load. libyaml's events are
    read up to the top-level ``gateway`` key, and only its value is built (re-emitted as a
    small document). Anything unusual (not a mapping at the top, a complex key, an alias to an
    anchor outside the section) falls back to building the whole document with libyaml.
    """
    loader = _LOADER(text)
    try:
        head = [loader.get_event(), loader.get_event(), loader.get_event()]
        if not isinstance(head[2], yaml.MappingStartEvent):
            raise _Unusual
        while not loader.check_event(yaml.MappingEndEvent):
            key = loader.get_event()
            if not isinstance(key, yaml.ScalarEvent):
                raise _Unusual
            value = _node_events(loader)
            if key.value == "gateway":
                small = yaml.emit([
                    yaml.StreamStartEvent(), yaml.DocumentStartEvent(), *value,
                    yaml.DocumentEndEvent(), yaml.StreamEndEvent()])
                return yaml.load(small, Loader=_LOADER)  # libyaml safe loader
        return None
    except (_Unusual, yaml.YAMLError):
        data = yaml.load(text, Loader=_LOADER)  # libyaml safe loader
        return data.get("gateway") if isinstance(data, dict) else None
    finally:
        loader.dispose()


class _Unusual(Exception):
    pass


def _node_events(loader: Any) -> list[Any]:
    """The events of the next node (a scalar, an alias, or a whole collection)."""
    events = [loader.get_event()]
    depth = 1 if isinstance(events[0], yaml.CollectionStartEvent) else 0
    while depth:
        event = loader.get_event()
        events.append(event)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
        elif isinstance(event, _END):
            depth -= 1
    return events


def resolve(bootstrap: Path, *, starting: bool = True) -> Path:
    """The file to load: ``<state_dir>/config/current.yaml`` when managed versions can be
    kept, else ``bootstrap`` itself. ``starting``: count this start in the boot record."""
    return _resolve(bootstrap, starting)[0]


def load_resolved(bootstrap: Path, *, starting: bool = True) -> tuple[Path, SiteConfig]:
    """:func:`resolve`, and the validated config of the file it names, loaded once.

    A new or edited bootstrap file is validated before it becomes a version; the version's
    text is the same, so that config is the one returned (a big site's load costs a second
    or more). Nothing in a config depends on the file's own path (relative paths are taken
    as given, against the working directory), only the locations its errors and warnings
    name. Raises :class:`ConfigError` as :func:`load_config` does."""
    path, config = _resolve(bootstrap, starting)
    return path, config if config is not None else load_config(path)


def _resolve(bootstrap: Path, starting: bool) -> tuple[Path, SiteConfig | None]:
    """The file to load, and its config when it was loaded on the way (else None)."""
    try:
        text = bootstrap.read_text(encoding="utf-8")
    except OSError:
        return bootstrap, None  # load_config says what is wrong with it
    state_dir = state_dir_of(text)
    if state_dir is None:
        return bootstrap, None
    store = VersionStore(state_dir)
    current = store.current()
    changed = current is None or store.state().get("bootstrap_hash") != text_hash(text)
    config: SiteConfig | None = None
    if changed:
        try:
            config = load_config(bootstrap)  # an invalid file is reported against itself,
        except (ConfigError, StartupError):  # and no state directory is created for it
            return bootstrap, None
    try:
        ensure_dir(state_dir, "state directory")  # the mode the runtime gives it
    except StoreError:
        return bootstrap, config  # the runtime says so in one line, with its exit code
    try:
        store.ensure()
    except (OSError, StoreError) as err:
        log.warning("config: cannot keep config versions in %s (%s); running %s as it is "
                    "(no config.apply)", store.root, getattr(err, "strerror", err), bootstrap)
        return bootstrap, config
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
        in_force, loaded = _count_start(store, current)
        if in_force != current:
            config = None  # the last good version went back in force
        elif loaded is not None:
            config = loaded
    return store.current_path, config


def _diff_line(old: str, new: str) -> str:
    from gateway.confmgmt.diff import config_diff, summary  # difflib: only for an edited file

    return summary(config_diff(old, new))


def _roll_back(store: VersionStore, current: int, good: int, reason: str) -> None:
    """Put the last good version back in force at boot, and record why."""
    log.error("config: %s", reason)
    store.set_current(good)
    store.update_state(pending=None, boot_rollback={
        "version": current, "to_version": good, "hash": store.record(good).hash,
        "reason": reason, "source": "boot record"})


def _count_start(store: VersionStore, current: int) -> tuple[int, SiteConfig | None]:
    """Count this start; returns the version in force after it, and its config when it
    had to be loaded to decide."""
    record = store.boot_record()
    starts = int(record.get("starts", 0)) if record.get("version") == current else 0
    good = store.state().get("good")
    loaded: SiteConfig | None = None
    if starts >= CRASH_LIMIT and isinstance(good, int) and good != current \
            and good in store.numbers():
        _roll_back(store, current, good, f"version {current} did not reach ready in {starts} "
                   f"starts in a row; version {good}, the last good one, is back in force")
        current, starts = good, 0
    elif isinstance(good, int) and good != current and good in store.numbers():
        try:  # exit 78 is not restarted by systemd: a version that cannot load goes now
            loaded = load_config(store.current_path)
        except (ConfigError, StartupError) as err:
            _roll_back(store, current, good, f"version {current} does not load ({err}); "
                       f"version {good}, the last good one, is back in force")
            current, starts = good, 0
    store.write_boot_record(current, starts + 1)
    return current, loaded
