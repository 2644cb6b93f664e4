"""The ``config`` component: remote configuration with a health gate and rollback.

Commands: ``config.get`` and ``config.history`` (read only), ``config.apply``,
``config.confirm`` and ``config.rollback``. An apply stores the new version, switches
``current.yaml`` to it (the commit point) and reloads through the runtime's reload path.
The component of the next run finds the apply pending in ``state.json`` and runs the
health gate: confirmed when ready in time, else the previous version is put back.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway import events
from gateway.commands import Command, CommandError, NoArgs, request_source
from gateway.components import Component, ComponentContext, ComponentSpec, register_component
from gateway.config.base import StrictModel
from gateway.config.errors import ConfigError
from gateway.config.loader import load_config
from gateway.config.site import SiteConfig
from gateway.confmgmt.versions import REDACTED, VersionStore, redact, text_hash, write_atomic
from gateway.errors import StartupError
from gateway.model import DeviceStatus, Event

log = logging.getLogger(__name__)


class ConfigSection(StrictModel):
    """Remote configuration (``config.apply``): the health gate and the history."""

    confirm_timeout: float = Field(
        120.0, gt=0, le=3600,
        description="Seconds an applied config has to become healthy (or be confirmed with "
        "config.confirm) before the previous version is put back.")
    new_devices: Literal["warn", "rollback"] = Field(
        "warn", description="A device the apply adds that is not online by the deadline: "
        "warn (confirm and name it in config_confirmed) or rollback.")
    keep: int = Field(20, ge=2, le=1000, description="Versions kept under the state dir.")


class ApplyArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    yaml: str = Field(max_length=1_000_000)
    expected_hash: str
    dry_run: bool = False
    confirm: Literal["auto", "manual"] = "auto"


class ConfirmArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int | None = None


class RollbackArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int
    confirm: Literal["auto", "manual"] = "auto"


class HistoryArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(20, ge=1, le=1000)


def managed_store(ctx: ComponentContext[Any]) -> VersionStore | None:
    """The version store when this gateway was started from a file and runs a managed
    version (``fieldgate run`` resolves ``current.yaml`` at start)."""
    store = VersionStore(ctx.state_dir)
    if ctx.config_path is None or store.current() is None:
        return None
    return store


class ConfigManager(Component):
    name = "config"

    def __init__(self, ctx: ComponentContext[ConfigSection], store: VersionStore) -> None:
        self.ctx = ctx
        self.cfg = ctx.config
        self.store = store
        store.keep = self.cfg.keep
        self.pending: dict[str, Any] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        for cmd in (
            Command("config.get", NoArgs, self.get, "The running config (secrets redacted), "
                    "its hash, version and source.", read_only=True),
            Command("config.history", HistoryArgs, self.history,
                    "The stored config versions, newest first.", read_only=True),
            Command("config.apply", ApplyArgs, self.apply, "Validate, diff and apply a full "
                    "YAML config; rolled back unless healthy within config.confirm_timeout."),
            Command("config.confirm", ConfirmArgs, self.confirm,
                    "Confirm an apply made with confirm: manual."),
            Command("config.rollback", RollbackArgs, self.rollback,
                    "Put a stored version back in force (with the health gate)."),
        ):
            self.ctx.commands.register(cmd)
        state = self.store.state()
        current = self.store.current()
        note = state.get("boot_rollback")
        if note:
            self.store.update_state(boot_rollback=None)
            await self._emit(events.CONFIG_ROLLED_BACK, asdict(events.ConfigRolledBack(**note)))
        pending = state.get("pending")
        if pending and pending.get("version") != current:
            log.warning("config: the apply of version %s was interrupted before it took "
                        "effect; version %s stays in force", pending.get("version"), current)
            self.store.update_state(pending=None)
            pending = None
        self.pending = pending

    def tasks(self) -> Any:
        yield "config-gate", self._gate

    # -- the health gate -----------------------------------------------------------------

    async def _gate(self) -> None:
        await self.ctx.ready.wait()
        current = self.store.current()
        self.store.write_boot_record(current, 0)  # this version started: no crash loop
        pending = self.pending
        if not pending:
            return
        if self.ctx.reload_error is not None:  # the runtime went back to the old config
            await self._roll_back(pending, f"the new config failed to start: "
                                           f"{self.ctx.reload_error}")
            return
        clock = self.ctx.clock
        deadline = clock.monotonic() + self.cfg.confirm_timeout
        problems: list[str] = []
        while clock.monotonic() < deadline:
            if self.pending is None:  # confirmed by command meanwhile
                return
            problems = self._problems(pending)
            if pending.get("confirm") == "auto" and not problems \
                    and not self._offline_new(pending):
                await self._confirmed(pending, "health gate")
                return
            await clock.sleep(0.2)
        if self.pending is None:
            return
        if pending.get("confirm") == "auto" and not problems:  # only new devices are offline
            await self._confirmed(pending, "health gate")
            return
        if pending.get("confirm") == "manual":
            problems = [f"not confirmed with config.confirm within "
                        f"{self.cfg.confirm_timeout:g} s", *problems]
        await self._roll_back(pending, "; ".join(problems) or "not healthy in time")

    def _problems(self, pending: dict[str, Any]) -> list[str]:
        site = self.ctx.site
        enabled = {d.id for d in site.devices if d.enabled}
        problems = [f"device {d} was online before and is not online again"
                    for d in pending.get("online_before", [])
                    if d in enabled and self.ctx.status.current(d) != DeviceStatus.ONLINE]
        if self.cfg.new_devices == "rollback":
            problems += [f"new device {d} is not online" for d in self._offline_new(pending)]
        uplink = self.ctx.get_component("uplink")
        connected = getattr(uplink, "connected", None)
        if connected is not None and not connected.is_set():
            problems.append(f"the uplink is not connected ({getattr(uplink, 'endpoint', '')})")
        return problems

    def _offline_new(self, pending: dict[str, Any]) -> list[str]:
        enabled = {d.id for d in self.ctx.site.devices if d.enabled}
        return [d for d in pending.get("new_devices", [])
                if d in enabled and self.ctx.status.current(d) != DeviceStatus.ONLINE]

    async def _confirmed(self, pending: dict[str, Any], source: str) -> None:
        version = pending["version"]
        self.pending = None
        self.store.update_state(pending=None, good=version)
        offline = self._offline_new(pending)
        if offline:
            log.warning("config: version %d confirmed, but its new devices %s are not online "
                        "(config.new_devices: warn)", version, ", ".join(offline))
        log.info("config: version %d confirmed (%s)", version, source)
        await self._emit(events.CONFIG_CONFIRMED, asdict(events.ConfigConfirmed(
            version, self.store.record(version).hash, source, offline)))

    async def _roll_back(self, pending: dict[str, Any], reason: str) -> None:
        version, previous = pending["version"], pending["previous"]
        log.error("config: version %d is rolled back to version %d: %s", version, previous,
                  reason)
        self.store.set_current(previous)
        self.pending = None
        self.store.update_state(pending=None)
        await self._emit(events.CONFIG_ROLLED_BACK, asdict(events.ConfigRolledBack(
            version, previous, self.store.record(previous).hash, reason, "health gate")))
        try:
            config = load_config(self.store.current_path)
        except (ConfigError, StartupError) as err:
            log.error("config: version %d does not load any more (%s); the gateway keeps "
                      "running what it runs", previous, err)
            return
        self.ctx.request_reload(config)

    async def _emit(self, kind: str, body: dict[str, Any]) -> None:
        await self.ctx.emit_event(Event(kind, body))

    # -- commands ------------------------------------------------------------------------

    def _current(self) -> tuple[int, str]:
        number = self.store.current()
        if number is None:
            raise CommandError("not_managed", "no managed config version is in force")
        return number, self.store.text(number)

    async def get(self, _: NoArgs) -> dict[str, Any]:
        number, text = self._current()
        record = self.store.record(number)
        state = self.store.state()
        return {"yaml": redact(text), "hash": record.hash, "version": number,
                "source": record.source, "ts_ms": record.ts_ms, "good": state.get("good"),
                "pending": self.pending,
                "devices": [d.id for d in self.ctx.site.devices]}  # what runs, not the file

    async def history(self, args: HistoryArgs) -> dict[str, Any]:
        state = self.store.state()
        return {"current": self.store.current(), "good": state.get("good"),
                "versions": [v.as_dict() for v in self.store.history()[:args.limit]]}

    async def apply(self, args: ApplyArgs) -> dict[str, Any]:
        number, text = self._current()
        if text_hash(text) != args.expected_hash:
            raise CommandError("hash_conflict", "the config changed since you read it (its "
                               "hash is not expected_hash); nothing changed. Read it again "
                               "with config.get and redo your change",
                               {"current_hash": text_hash(text), "version": number})
        self._refuse_if_pending()
        config = self._validate(args.yaml)
        from gateway.confmgmt.diff import config_diff, summary  # difflib: on use only

        diff = config_diff(text, args.yaml)
        line = summary(diff)
        if args.dry_run:
            return {"dry_run": True, "valid": True, "hash": text_hash(args.yaml),
                    "summary": line, "diff": diff}
        version = self.store.add(args.yaml, _source("config.apply"), line)
        await self._activate(version.number, number, args.confirm, version.source,
                             diff["devices"]["added"], line, config)
        return {"version": version.number, "previous": number, "hash": version.hash,
                "summary": line, "diff": diff, "confirm": args.confirm,
                "confirm_timeout": self.cfg.confirm_timeout}

    async def rollback(self, args: RollbackArgs) -> dict[str, Any]:
        number, text = self._current()
        self._refuse_if_pending()
        if args.version not in self.store.numbers():
            raise CommandError("unknown_version", f"no stored version {args.version}; see "
                               "config.history", {"versions": self.store.numbers()})
        if args.version == number:
            raise CommandError("already_current", f"version {number} is already in force")
        target = self.store.text(args.version)
        config = self._validate(target)
        from gateway.confmgmt.diff import config_diff, summary

        diff = config_diff(text, target)
        await self._activate(args.version, number, args.confirm,
                             _source(f"config.rollback to {args.version}"),
                             diff["devices"]["added"], summary(diff), config)
        return {"version": args.version, "previous": number, "summary": summary(diff),
                "diff": diff, "confirm": args.confirm}

    async def confirm(self, args: ConfirmArgs) -> dict[str, Any]:
        pending = self.pending
        if pending is None:
            raise CommandError("nothing_pending", "no apply is waiting for confirmation")
        if args.version is not None and args.version != pending["version"]:
            raise CommandError("wrong_version", f"version {pending['version']} is pending, "
                               f"not {args.version}")
        await self._confirmed(pending, _source("config.confirm"))
        return {"version": pending["version"], "confirmed": True}

    def _refuse_if_pending(self) -> None:
        if self.pending is not None or self.store.state().get("pending"):
            raise CommandError("apply_pending", "an apply is waiting for its health gate or "
                               "config.confirm; wait for it or confirm it first")

    def _validate(self, text: str) -> SiteConfig:
        """Validate ``text`` exactly as check-config does (every error at once)."""
        if REDACTED in text:
            raise CommandError("bad_config", f"the config holds {REDACTED!r} where a secret "
                               "was; put the value or a ${VAR} reference back. Nothing changed")
        candidate = self.store.root / "candidate.yaml"
        write_atomic(candidate, text)
        try:
            config = load_config(candidate)
        except ConfigError as err:
            raise CommandError("bad_config", "the new config is invalid; nothing changed",
                               [str(i) for i in err.issues]) from err
        except StartupError as err:
            raise CommandError("bad_config", f"{err}; nothing changed") from err
        finally:
            candidate.unlink(missing_ok=True)
        if Path(config.gateway.state_dir) != Path(self.ctx.site.gateway.state_dir):
            raise CommandError("bad_config", "gateway.state_dir cannot change remotely (the "
                               "managed versions live there); nothing changed")
        return config

    async def _activate(self, number: int, previous: int, confirm: Literal["auto", "manual"],
                        source: str,
                        new_devices: list[str], line: str, config: SiteConfig) -> None:
        online = sorted(d for d, (status, _, _) in self.ctx.status.snapshot().items()
                        if status == DeviceStatus.ONLINE)
        self.pending = {"version": number, "previous": previous, "confirm": confirm,
                        "online_before": online, "new_devices": new_devices, "source": source}
        self.store.update_state(pending=self.pending)
        self.store.set_current(number)  # the commit point
        self.store.prune({number, previous, self.store.state().get("good", previous)})
        log.info("config: version %d in force (%s, from %s); health gate %s", number, line,
                 source, confirm)
        await self._emit(events.CONFIG_APPLIED, asdict(events.ConfigApplied(
            number, previous, self.store.record(number).hash, source, line, confirm)))
        self.ctx.request_reload(config)


def _source(what: str) -> str:
    return f"{what} via {request_source.get() or 'a local caller'}"


def _factory(ctx: ComponentContext[ConfigSection]) -> ConfigManager | None:
    store = managed_store(ctx)
    if store is None:
        return None  # started from a plain file (tests, embedding): nothing to manage
    return ConfigManager(ctx, store)


register_component(ComponentSpec("config", _factory, section=ConfigSection,
                                 after=("uplink",)))
