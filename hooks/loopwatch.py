"""A watch on the event loop: who blocked it, and for how long.

Everything in fieldgate shares one event loop. An ``async def`` hook that makes a blocking
call (``time.sleep``, ``requests.get``, a busy loop) stops the pollers, the pipeline, the
uplink and the commands until it returns; no timeout can fire, because timeouts need the
loop too. So a thread outside the loop looks at it twice per ``plugins.loop_stall_warn``
and keeps a heartbeat: the last time the loop was known free. The loop is free when the
look finds it waiting for I/O (its thread's top Python frame is the loop's own wait: no
wake-up of the loop, which an idle site spends most of its time in); when it finds it
running something, the thread posts a ping (``call_soon_threadsafe``), which the loop
answers as soon as the running callback returns. When the heartbeat is older than the
threshold (plus one look's period, so only a real stall counts), the thread logs what the
loop is running: the task, the Python frame, and the plugin and hook when it is one. It
counts the stall (``plugins.stats`` -> ``loop``) and logs again when the loop runs again,
with the stall's length. It cannot stop the blocking call; it makes it visible in minutes.
"""

from __future__ import annotations

import asyncio
import asyncio.tasks
import inspect
import logging
import selectors
import sys
import threading
import time
import traceback
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hooks.manager import HookRunner

log = logging.getLogger(__name__)


class LoopWatch:
    """Watches the running loop. ``runner`` names the plugin and hook of a stall; None (a
    site without plugins, until one is loaded) leaves a stall's plugin unnamed."""

    def __init__(self, runner: HookRunner | None, warn_s: float) -> None:
        self.runner = runner
        self.warn_s = warn_s
        # The thread looks every period (a wake-up of the thread only, unless the loop is
        # busy: then a ping, answered at once by a healthy loop). A stall of warn_s is
        # reported between warn_s and warn_s + 2 periods after it began.
        self.period = warn_s / 2
        self.stalls = 0
        self.longest_s = 0.0
        self.by_plugin: dict[str, int] = {}
        self.last: dict[str, Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        #: The loop thread's top frame while its loop waits for I/O (a loop run by C code,
        #: uvloop: the frame that called it); None: unknown, every look pings.
        self._idle_frame: FrameType | None = None
        self._pong = 0.0  # when the loop last answered a ping (time.monotonic())
        self._pinged = False  # a ping is on its way
        self.pings = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching the running loop (call from the loop)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._idle_frame = _caller_of_the_loop(sys._getframe())
        self._pinged = False
        # A fresh flag per start: a thread of an earlier start still asleep ends on its own.
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(self._stop,),
                                        name="loop-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
        self._idle_frame = None

    # -- the watching thread -------------------------------------------------------------

    def _waiting(self) -> bool:
        """Whether the loop waits for I/O now (its thread's top frame is the loop's wait)."""
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return False
        return frame is self._idle_frame or frame.f_code.co_filename == selectors.__file__

    def _answer(self) -> None:  # on the loop
        self._pong = time.monotonic()
        self._pinged = False

    def _look(self, beat: float) -> float:
        """The heartbeat after this look: now if the loop waits for I/O, else the last
        answer to a ping (and a ping goes out when none is on its way)."""
        if self._waiting():
            return time.monotonic()
        beat = max(beat, self._pong)
        if not self._pinged and self._loop is not None:
            self._pinged = True
            self.pings += 1
            try:
                self._loop.call_soon_threadsafe(self._answer)
            except RuntimeError:  # the loop is closed: nothing left to watch
                self._stop.set()
        return beat

    def _watch(self, stop: threading.Event) -> None:
        reported: float | None = None  # the heartbeat of the stall being reported
        beat = time.monotonic()
        while True:
            # time.sleep, not stop.wait(period): a wake-up of a condition wait costs this
            # thread about twice the CPU (stop() waits at most a second for the end).
            time.sleep(self.period)
            if stop.is_set():
                return
            beat = self._look(beat)
            now = time.monotonic()
            if reported is not None and beat != reported:
                self._ended(beat - reported)
                reported = None
            if reported is None and now - beat > self.warn_s + self.period:
                reported = beat
                try:
                    self._report(now - beat)
                except Exception:  # never let the watch die of its own report
                    log.exception("loop watch: cannot describe the stall")

    def _report(self, blocked_s: float) -> None:
        loop = self._loop
        current: dict[Any, asyncio.Task[Any]] = getattr(asyncio.tasks, "_current_tasks", {})
        task = current.get(loop) if loop is not None else None
        frame = sys._current_frames().get(self._loop_thread)
        plugin, hook = self._culprit(task, frame)
        self.stalls += 1
        if plugin:
            self.by_plugin[plugin] = self.by_plugin.get(plugin, 0) + 1
        where = _where(frame)
        self.last = {"task": task.get_name() if task is not None else None,
                     "plugin": plugin, "hook": hook, "where": where,
                     "since_ms": int(time.time() * 1000 - blocked_s * 1000),
                     "duration_s": None}
        who = f"plugin {plugin}, hook {hook}" if plugin else "no plugin hook"
        stack = "".join(traceback.format_stack(frame, limit=6)) if frame else ""
        # The advice is for plugin authors; a stall outside any hook (an import, a big
        # reload) is the gateway's own and the stack says where.
        advice = (" A blocking call in an async def hook does this: use await (asyncio.sleep,"
                  " an async client) or make the hook a plain def, which runs in a worker"
                  " thread." if plugin else "")
        log.warning(
            "event loop blocked for %.2f s so far (plugins.loop_stall_warn %.2f s): %s, "
            "task %s, at %s. Nothing else runs meanwhile (pollers, pipeline, commands).%s"
            "\n%s", blocked_s, self.warn_s, who, self.last["task"], where, advice, stack)

    def _ended(self, duration_s: float) -> None:
        self.longest_s = max(self.longest_s, duration_s)
        if self.last is not None:
            self.last["duration_s"] = round(duration_s, 3)
            log.warning("event loop ran again after a stall of %.2f s (%s)", duration_s,
                        f"plugin {self.last['plugin']}, hook {self.last['hook']}"
                        if self.last["plugin"] else f"task {self.last['task']}")

    def _culprit(self, task: asyncio.Task[Any] | None, frame: FrameType | None
                 ) -> tuple[str | None, str | None]:
        """The plugin and hook running: from the hook call the task is in, else from a
        frame of a hook implementation on the stack."""
        if self.runner is None:
            return None, None
        call = self.runner.call_of(task)
        if call is not None:
            return call.plugin, call.hook
        codes: dict[CodeType, tuple[str, str]] = {}
        for hook_caller in list(vars(self.runner.pm.hook).values()):
            for impl in getattr(hook_caller, "get_hookimpls", list)():
                code = getattr(impl.function, "__code__", None)
                if code is not None:
                    codes[code] = (impl.plugin_name, hook_caller.name)
        while frame is not None:
            found = codes.get(frame.f_code)
            if found:
                return found
            frame = frame.f_back
        return None, None

    def stats(self) -> dict[str, Any]:
        return {"stall_warn_s": self.warn_s, "stalls": self.stalls,
                "longest_s": round(self.longest_s, 3), "by_plugin": dict(self.by_plugin),
                "last": dict(self.last) if self.last else None}


def _caller_of_the_loop(frame: FrameType | None) -> FrameType | None:
    """The frame that runs the loop, from a frame called by a task: the first one below the
    task's coroutines. For a loop written in C (uvloop) it is the thread's top frame
    whenever the loop waits for I/O; the standard loop's wait is a frame of ``selectors``."""
    def coroutine(f: FrameType) -> bool:
        return bool(f.f_code.co_flags & (inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE))

    while frame is not None and not coroutine(frame):
        frame = frame.f_back
    while frame is not None and coroutine(frame):
        frame = frame.f_back
    return frame


def _where(frame: FrameType | None) -> str:
    if frame is None:
        return "unknown frame"
    code = frame.f_code
    return f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"
