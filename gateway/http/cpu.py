"""The HTTP server's own CPU time, measured directly: a meter for benchmarks and diagnosis.

Off unless the daemon starts with ``FIELDGATE_HTTP_CPU=1`` in its environment. When on, it
wraps the event loop's callback runner (``asyncio.events.Handle._run``) and adds the thread
CPU time (``time.thread_time``: user and system time of the loop's thread) of every callback
that belongs to the HTTP side:

- a step of a task whose coroutine is aiohttp's server's or ``gateway.http``'s: each request's
  handling (parsing done, middleware, handlers, the answer's first write), the live streams,
  the outbox follower that feeds them;
- a transport callback whose protocol is aiohttp's server's: reading requests off the socket and
  parsing them, writing the rest of an answer the socket did not take at once (the kernel's
  copy counts: it is system time of the loop's thread);
- aiohttp's own timers (keep-alive, slow-request guards).

What it leaves out: work of other tasks that the HTTP side causes indirectly (a command run
through the registry on the caller's behalf is the HTTP task's work, so it counts; a garbage
collection that HTTP garbage triggers while another task runs does not), and the pipeline
observer's few stores per poll or per sample (:class:`gateway.http.live.LatestValues`), which
run with or without the server because ``devices.list`` reads them.

The figure is the daemon's own CPU for HTTP, so the load of other processes on the machine
moves it far less than it moves a whole-process comparison. It needs asyncio's own event
loop; under another loop (uvloop) it reports why it is off. Cost when on: an attribute
lookup and a type check per callback of the loop, and two clock reads per HTTP callback.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

ENV = "FIELDGATE_HTTP_CPU"
#: Where the HTTP side's code lives: this package, and the server side of aiohttp
#: (web_protocol, web_app...), not its client, which the notification channels use.
_SERVER = "aiohttp.web"
_HERE = os.path.dirname(__file__) + os.sep  # as the code objects name their files
_AIOHTTP: str | None = None  # aiohttp's directory + "web", once a server runs


def _mine(filename: str) -> bool:
    global _AIOHTTP
    if _AIOHTTP is None:
        spec = importlib.util.find_spec("aiohttp")
        origin = spec.origin if spec is not None else None
        _AIOHTTP = os.path.join(os.path.dirname(origin), "web") if origin else _HERE
    return filename.startswith(_HERE) or filename.startswith(_AIOHTTP)


class HttpCpuMeter:
    """Seconds of the loop thread's CPU spent in HTTP callbacks since :meth:`install`."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.callbacks = 0
        #: Seconds by kind of callback: a task's coroutine, or a transport's or timer's
        #: method (``_read_ready``: requests read and parsed; ``_write_ready``: the rest of
        #: an answer written).
        self.by: dict[str, float] = {}
        self.off_reason: str | None = f"off: start the daemon with {ENV}=1 to measure"
        self._undo: Callable[[], None] | None = None

    @property
    def on(self) -> bool:
        return self._undo is not None

    def snapshot(self) -> dict[str, Any]:
        if not self.on:
            return {"on": False, "reason": self.off_reason}
        return {"on": True, "seconds": round(self.seconds, 6), "callbacks": self.callbacks,
                "by": {k: round(v, 6) for k, v in sorted(self.by.items())}}

    def install(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Start counting; False (and :attr:`off_reason` says why) when it cannot."""
        if self.on:
            return True
        if not isinstance(loop, asyncio.BaseEventLoop):
            self.off_reason = (f"off: the event loop is {type(loop).__module__}."
                               f"{type(loop).__name__}, and the meter needs asyncio's own")
            log.warning("http: the CPU meter (%s) is %s", ENV, self.off_reason)
            return False
        if not _ACTIVE:
            _patch()
        _ACTIVE.append(self)
        self._undo = self._remove
        self.off_reason = None
        return True

    def _remove(self) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        if not _ACTIVE:
            _unpatch()

    def uninstall(self) -> None:
        if self._undo is not None:
            self._undo()
            self._undo = None
            self.off_reason = "off: the HTTP component stopped"


#: The meters installed, oldest first; the newest counts. A reload starts the new HTTP
#: component before the old one stops: the loop is wrapped once, and unwrapped when the
#: last meter goes.
_ACTIVE: list[HttpCpuMeter] = []
_ORIGINAL: list[Callable[[asyncio.Handle], None]] = []


def _patch() -> None:
    handle_cls: Any = asyncio.events.Handle
    original = handle_cls._run
    thread_time = time.thread_time

    def _run(handle: asyncio.Handle) -> None:
        callback = handle._callback  # type: ignore[attr-defined]
        owner = getattr(callback, "__self__", None)
        if owner is None or not _is_http(owner):
            original(handle)
            return
        t0 = thread_time()
        try:
            original(handle)
        finally:
            spent = thread_time() - t0
            if _ACTIVE:
                meter = _ACTIVE[-1]
                meter.seconds += spent
                meter.callbacks += 1
                label = _label(owner, callback)
                meter.by[label] = meter.by.get(label, 0.0) + spent

    _ORIGINAL.append(original)
    handle_cls._run = _run


def _unpatch() -> None:
    handle_cls: Any = asyncio.events.Handle
    if _ORIGINAL:
        handle_cls._run = _ORIGINAL.pop()


def _is_http(owner: Any) -> bool:
    get_coro = getattr(owner, "get_coro", None)
    if get_coro is not None:  # a task: whose coroutine?
        code = getattr(get_coro(), "cr_code", None)
        return code is not None and _mine(code.co_filename)
    protocol = getattr(owner, "_protocol", None)
    if protocol is not None:  # a transport: an HTTP connection's (or TLS over one)?
        protocol = getattr(protocol, "_app_protocol", protocol)
        return type(protocol).__module__.startswith(_SERVER)
    return type(owner).__module__.startswith(_SERVER)


def _label(owner: Any, callback: Any) -> str:
    get_coro = getattr(owner, "get_coro", None)
    if get_coro is not None:
        code = getattr(get_coro(), "cr_code", None)
        return f"task {code.co_qualname}" if code is not None else "task"
    return f"{type(owner).__name__}.{getattr(callback, '__name__', '?')}"


def wanted() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")
