"""The daemon: build the parts from the config, start them in dependency order, supervise
them, and take them down in reverse within a bounded time.

Order up: store -> status -> pipeline -> components (each after the ones it names in
``after``) -> drivers -> READY.
Order down: drivers -> pipeline drain -> components drain -> tasks cancelled -> components
stop -> drivers close -> store close. ``reload`` redoes everything above the store, so the
buffer and its sequence survive a config change.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.base import DeviceConfig, Driver, get_driver
from gateway import __version__, components, heap
from gateway.clock import Clock, SystemClock
from gateway.commands import CommandRegistry
from gateway.config.errors import ConfigError
from gateway.config.loader import load_config
from gateway.config.site import SiteConfig
from gateway.errors import StartupError
from gateway.model import Batch, DeviceStatus, Event, Value
from gateway.paths import precreate_private_file
from gateway.pipeline import Pipeline
from gateway.pollstats import PollStats, PollStatsBook
from gateway.status import DeviceStatusService
from gateway.store import Store
from gateway.store.kv import KV
from gateway.store.opening import ensure_dir
from gateway.supervisor import Supervisor
from gateway.systemd import Notifier
from gateway.text import counted

log = logging.getLogger(__name__)


class DriverContextImpl:
    """The DriverContext the runtime gives each driver."""

    def __init__(self, app: App, name: str) -> None:
        self._app = app
        self.logger = logging.getLogger(f"drivers.{name}")
        self.clock: Clock = app.clock
        self.state_dir = app.state_dir

    async def emit(self, batch: Batch) -> None:
        await self._app.pipeline.put(batch)

    def set_status(self, device: str, status: DeviceStatus, reason: str = "") -> None:
        self._app.pipeline.report_status(device, status, reason)

    async def emit_event(self, event: Event) -> None:
        await self._app.pipeline.add_event(event)

    def kv(self, namespace: str) -> KV:
        return self._app.store.kv(namespace)

    def poll_stats(self, name: str) -> PollStats:
        return self._app.poll_stats.of(name)


class App:
    """One running gateway. Components never see it: each gets a ComponentContext."""

    def __init__(self, config: SiteConfig, config_path: Path | None = None,
                 clock: Clock | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.clock: Clock = clock or SystemClock()
        self.version = __version__
        self.state_dir = Path(config.gateway.state_dir)
        store_path = config.store.path or self.state_dir / "buffer.sqlite3"
        self.store = Store(store_path, max_bytes=config.store.max_bytes,
                           durability=config.store.durability,
                           on_corrupt=config.store.on_corrupt, clock=self.clock)
        #: Owned here, not by a pipeline: it outlives a reload and every component reads it.
        self.status = DeviceStatusService()
        self.poll_stats = PollStatsBook(self.clock.now_ms)
        self.pipeline = self._new_pipeline()
        self.commands = CommandRegistry()
        self.drivers: dict[str, Driver] = {}
        self.device_driver: dict[str, Driver] = {}
        self.components: list[components.Component] = []
        #: The running components by name (what ``ctx.component(name)`` returns).
        self.running: dict[str, components.Component] = {}
        self.notifier = Notifier()
        self.started_ms = self.clock.now_ms()
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._reload: asyncio.Event = asyncio.Event()
        self._reload_with: SiteConfig | None = None
        #: Why the last reload did not take effect (None: it did, or there was none).
        self.reload_error: str | None = None
        #: How many times the parts were started (the first start, then one per reload).
        self.started_runs = 0
        #: ``fieldgate run`` sets this: after each start, :func:`settle_heap`.
        self.settle_heap = False
        self._supervisor: Supervisor | None = None
        self._signals = 0
        self._first_signal_at = 0.0
        self._driver_tasks: list[str] = []
        self._signal_tasks: set[asyncio.Task[None]] = set()

    def _new_pipeline(self) -> Pipeline:
        return Pipeline(self.store, self.clock, self.status,
                        queue_batches=self.config.pipeline.queue_batches,
                        queue_samples=self.config.pipeline.queue_samples,
                        max_commit_samples=self.config.pipeline.max_commit_samples,
                        commit_gather=commit_gather(self.config.pipeline.commit_gather,
                                                    len(self.config.devices)))

    # -- what the component contexts and the driver contexts call ----------------------

    @property
    def supervisor(self) -> Supervisor:
        if self._supervisor is None:
            raise RuntimeError("the gateway is not running")
        return self._supervisor

    def device(self, device_id: str) -> DeviceConfig | None:
        return self.config.device(device_id)

    async def write(self, device: str, point: str, value: Value) -> Any:
        driver = self.device_driver.get(device)
        if driver is None:
            raise KeyError(device)
        return await driver.write(device, point, value)

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self, config: SiteConfig | None = None) -> None:
        """Rebuild above the store with ``config`` (validated by the caller), or with the
        config file read again when None."""
        self._reload_with = config
        self._reload.set()

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped; returns the process exit code."""
        ensure_dir(self.state_dir, "state directory")
        with contextlib.suppress(OSError):  # Store.open says what is wrong with the path
            precreate_private_file(self.store.path)
        self._install_signal_handlers()
        async with self.notifier.extending("opening the store (a schema upgrade can take "
                                           "minutes)"):
            await self.store.open()
        try:
            async with asyncio.TaskGroup() as group:
                self._supervisor = Supervisor(group, clock=self.clock)
                watchdog = group.create_task(self.notifier.watchdog(), name="systemd-watchdog")
                previous: SiteConfig | None = None
                while True:
                    await self._start_or_go_back(previous)
                    self.notifier.ready(counted(len(self.device_driver), "device"))
                    self.ready.set()
                    if self.settle_heap:
                        settle_heap()
                    heap.tune()
                    heap.trim()  # start-up's temporaries go back to the OS
                    reason = await self._wait_stop_or_reload()
                    self.ready.clear()
                    if reason == "stop":
                        self.notifier.stopping()
                    await self._stop_parts()
                    if reason == "stop":
                        break
                    self._reload.clear()
                    previous = self.config
                    self._reload_config()
                watchdog.cancel()
        finally:
            self._remove_signal_handlers()
            await self.store.close()
        log.info("fieldgate stopped")
        return 0

    async def _wait_stop_or_reload(self) -> str:
        stop = asyncio.ensure_future(self._stop.wait())
        reload = asyncio.ensure_future(self._reload.wait())
        done, pending = await asyncio.wait({stop, reload}, return_when=asyncio.FIRST_COMPLETED)
        for fut in pending:
            fut.cancel()
        return "stop" if stop in done else "reload"

    async def _start_or_go_back(self, previous: SiteConfig | None) -> None:
        """Start the parts; when a reload's config fails to start (``previous`` is the config
        that ran before), take down what started and run ``previous`` again."""
        try:
            await self._start_parts()
        except Exception as err:
            if previous is None:
                raise  # the first start: the daemon cannot work as configured
            self.reload_error = f"{type(err).__name__}: {err}"
            log.error("reload: the new config validated but failed to start (%s); the "
                      "gateway goes back to the config it ran before. Fix the config and "
                      "reload again", self.reload_error,
                      exc_info=not isinstance(err, StartupError))
            self.notifier.status(f"reload failed: {self.reload_error}")
            await self._stop_parts()
            self.config = previous
            await self._start_parts()
        else:
            if previous is not None:
                self.reload_error = None

    async def _start_parts(self) -> None:
        sup = self.supervisor
        self.drivers, self.device_driver, self._driver_tasks = {}, {}, []
        # Loaded once, before the pipeline and the components: the rules read it at start.
        await self.status.load(self.store)
        self.pipeline = self._new_pipeline()
        self.commands = CommandRegistry()
        self.components, self.running = [], {}
        self.store.begin_consumers()
        for cspec in components.registry().values():  # in dependency order
            section = getattr(self.config, cspec.name, None) if cspec.section else None
            ctx = components.ComponentContext(self, cspec, section, self.running)
            component = cspec.factory(ctx)
            if component is not None:
                await component.start()
                self.components.append(component)
                self.running[cspec.name] = component
        await self.store.retire_consumers(self.store.active_consumers)
        sup.start("pipeline", self.pipeline.run)
        for component in self.components:
            for name, factory in component.tasks():
                sup.start(name, factory)
        by_type: dict[str, list[DeviceConfig]] = {}
        for device in self.config.devices:
            if device.enabled:
                by_type.setdefault(device.type, []).append(device)
        for type_name, devices in by_type.items():
            spec = get_driver(type_name)
            driver = spec.factory(devices, DriverContextImpl(self, type_name))
            self.drivers[type_name] = driver
            for device in devices:
                self.device_driver[device.id] = driver
            for command in driver.commands():
                self.commands.register(command)
            for name, factory in driver.tasks():
                sup.start(name, factory)
                self._driver_tasks.append(name)
        self.started_runs += 1
        log.info("fieldgate %s started: gateway %s, %s, drivers: %s, event loop %s",
                 self.version, self.config.gateway.id, counted(len(self.device_driver), "device"),
                 ", ".join(sorted(self.drivers)) or "none", loop_name())

    async def _stop_parts(self) -> None:
        self.status.stopping = True  # devices going offline now: a planned stop
        deadline = self.config.shutdown.drain_timeout
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        sup = self.supervisor

        def left() -> float:
            return max(0.1, deadline - (loop.time() - t0))

        await sup.cancel(self._driver_tasks, timeout=left())
        self.pipeline.close()
        pipeline_task = sup.tasks.get("pipeline")
        try:
            if pipeline_task is not None and not pipeline_task.done():
                await asyncio.wait_for(asyncio.shield(pipeline_task), left())
            else:
                await asyncio.wait_for(self.pipeline.drain(), left())
        except TimeoutError:
            log.error("pipeline drain did not finish within %.1f s; %d queued batches are lost",
                      deadline, self.pipeline.queue.qsize())
        for component in reversed(self.components):
            try:
                await asyncio.wait_for(component.drain(), left())
            except TimeoutError:
                log.warning("component %s did not drain in time", component.name)
        await sup.cancel(None, timeout=left())
        for component in reversed(self.components):
            await _quietly(component.stop(), f"stopping {component.name}")
        for driver in self.drivers.values():
            await _quietly(driver.close(), f"closing {type(driver).__name__}")
        sup.tasks.clear()

    def _reload_config(self) -> None:
        new, self._reload_with = self._reload_with, None
        if new is None:
            if self.config_path is None:
                return
            try:
                new = load_config(self.config_path)
            except (ConfigError, StartupError) as err:
                self.reload_error = str(err)
                log.error("reload: %s; the gateway keeps running the config it had. Fix the "
                          "file and reload again", err)
                return
        if new.store != self.config.store or new.gateway.state_dir != self.config.gateway.state_dir:
            log.warning("reload: store and state_dir changes take effect at the next restart")
        self.config = new
        log.info("configuration reloaded from %s", self.config_path)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        except (NotImplementedError, RuntimeError):  # not the main thread
            return

    def _on_sighup(self) -> None:
        """SIGHUP is a reload, as daemons conventionally do: the same path as the ``reload``
        command, so an invalid file is reported and changes nothing."""
        log.info("received SIGHUP: reloading the configuration")
        task = asyncio.get_running_loop().create_task(self._reload_on_signal(),
                                                      name="sighup-reload")
        self._signal_tasks.add(task)
        task.add_done_callback(self._signal_tasks.discard)

    async def _reload_on_signal(self) -> None:
        reply = await self.commands.execute("reload", {})
        if not reply.get("ok"):
            error = reply.get("error", {})
            log.error("SIGHUP: the configuration was not reloaded: %s %s", error.get("message"),
                      "; ".join(str(d) for d in error.get("details") or []))

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                return

    def _on_signal(self, sig: signal.Signals) -> None:
        now = asyncio.get_running_loop().time()
        self._signals += 1
        if self._signals == 1:
            self._first_signal_at = now
            log.info("received %s: draining (send it again to exit at once)", sig.name)
            self.request_stop()
        elif now - self._first_signal_at < 0.5:
            # `timeout` and shells signal the child and then its process group: the same
            # signal twice within microseconds is one request, not an impatient operator.
            self._signals = 1
        else:
            log.warning("received %s again: exiting without draining", sig.name)
            os._exit(128 + sig.value)


#: The daemon's event loop: ``auto`` (the default), ``uvloop`` or ``asyncio`` (the standard
#: library's).
LOOP_ENV = "FIELDGATE_LOOP"
#: From this many devices on, ``auto`` runs the daemon on uvloop (see event_loop_factory).
UVLOOP_FROM_DEVICES = 10
#: ``pipeline.commit_gather`` when the site file leaves it unset, from this many devices on
#: (below: 0, commit at once): one commit per polling cycle instead of several (about 5 % of
#: the CPU at 100 devices x 125 points, bench/site_profile.py --commit-gather).
GATHER_FROM_DEVICES = 10
DEFAULT_GATHER_S = 0.25


def commit_gather(setting: float | None, devices: int) -> float:
    """The pipeline's gather: the site's setting, else :data:`DEFAULT_GATHER_S` from
    :data:`GATHER_FROM_DEVICES` devices on and 0 below."""
    if setting is not None:
        return setting
    return DEFAULT_GATHER_S if devices >= GATHER_FROM_DEVICES else 0.0


def event_loop_factory(devices: int) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop ``fieldgate run`` runs a site of ``devices`` devices on; None is the
    standard asyncio loop.

    uvloop runs callbacks, timers and socket I/O in C: per Modbus request (a future, a timer,
    a socket read, a task step) that is most of what the loop costs, which on the standard
    loop was about a third of the daemon's CPU at 100 x 125 points. Loaded, it keeps about
    2 MB resident, more than a small site's whole saving is worth (its idle RSS goal is
    50 MB): ``FIELDGATE_LOOP`` unset (``auto``) takes uvloop from
    :data:`UVLOOP_FROM_DEVICES` devices on, ``uvloop`` always, ``asyncio`` never. Without
    uvloop (a platform with no wheel for it) it is the standard loop, said at INFO. Imported
    here, never at module level: the CLI's other commands and the tests do not load it.
    """
    choice = os.environ.get(LOOP_ENV, "").strip().lower() or "auto"
    if choice not in ("auto", "uvloop", "asyncio"):
        log.warning("%s=%r is not a loop fieldgate knows (auto, uvloop or asyncio): using "
                    "auto", LOOP_ENV, choice)
        choice = "auto"
    if choice == "asyncio" or (choice == "auto" and devices < UVLOOP_FROM_DEVICES):
        return None
    try:
        import uvloop
    except ImportError as err:
        log.info("uvloop is not available (%s): running on the standard asyncio loop", err)
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def preload_drivers(config: SiteConfig) -> None:
    """Import the configured drivers (and their protocol libraries) now, before the event
    loop runs: ``fieldgate run`` calls it. Imported at start-up instead, in the middle of
    :meth:`App._start_parts` after the HTTP server, the embedded broker and the plugins'
    loop watch started, they held the loop for the longest stretch of the start: the OCPP
    library alone builds several hundred dataclasses, pymodbus follows (a "stall" of 0.75 s
    on a loaded demo, most of it these imports). The same work, done earlier; what fails
    to import fails again in :meth:`App._start_parts`, which reports it."""
    for type_name in sorted({d.type for d in config.devices if d.enabled}):
        with contextlib.suppress(Exception):
            get_driver(type_name)


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: the loop this runs on (said in the start-up line)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.split(".")[0] == "uvloop" else "asyncio"


#: Allocations (less frees) between two young-generation collections; Python's default is 700.
#: Above a cycle's samples in flight at 200 x 125 (25,000 named tuples, which stay tracked):
#: they are freed after their commit, so the count falls back and a steady site collects
#: seldom (10,000 made 2-5 collections a second there, 9-12 % of the process's CPU). What it
#: can leave uncollected for a while is at most this many objects in cycles.
GC_THRESHOLD = 50_000


def settle_heap() -> None:
    """Keep the garbage collector off what start-up built, once it is running.

    The config's models, the read plans and the imports live as long as the process, and the
    samples in flight are tracked containers (named tuples): at 100 x 125 points the
    collector walked that whole heap several times a minute and found nothing, 27-31 % of the
    process's CPU (``bench/site_profile.py --no-settle``, busy machine); 9 % with this. Frozen,
    a full collection walks only what was made since; the larger first threshold lets most
    samples die before a collection sees them. Unfrozen first: after a reload the old
    config's cycles are garbage to collect.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 10, 10)


async def _quietly(awaitable: Any, what: str) -> None:
    try:
        await asyncio.wait_for(awaitable, 5)
    except Exception as err:
        log.warning("%s failed: %s", what, err)
