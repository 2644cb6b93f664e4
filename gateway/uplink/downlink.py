"""The command downlink: ``cmd/<name>`` in, ``reply`` out, through the command registry.

A request is ``{"id": "<request id>", "args": {...}}`` on ``<base>/cmd/<name>``. QoS 1 means
the broker may deliver a request twice, so a request id is executed once: the replies of the
last ``reply_cache`` ids are kept (and persisted in the store's KV, so a redelivery after a
restart is still answered from the cache), and a repeat gets the same reply again. Every
malformed request gets an error reply, or, when it carries no usable id, is dropped with a
log line. Commands run in their own tasks, so a slow one never blocks the receive loop, and
they outlive a reconnect: a reply whose connection died is sent on the next one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.store.kv import KV
from gateway.uplink.config import UplinkSection
from gateway.uplink.forwarder import PendingReply, ReplyOutbox
from gateway.uplink.wire import Topics, reply_message

log = logging.getLogger(__name__)

MAX_ID_LEN = 128
_KV_KEY = "replies"
_ID_PEEK = re.compile(rb'"id"\s*:\s*"([^"\\]{1,128})"')

Executor = Callable[[str, Any], Awaitable[dict[str, Any]]]


class Downlink:
    def __init__(
        self,
        *,
        topics: Topics,
        cfg: UplinkSection,
        gateway_id: str,
        execute: Executor,
        outbox: ReplyOutbox,
        kv: KV,
        now_ms: Callable[[], int],
    ) -> None:
        self.topics = topics
        self.cfg = cfg
        self.gateway_id = gateway_id
        self._execute = execute
        self.outbox = outbox
        self._kv = kv
        self._now_ms = now_ms
        self._recent: OrderedDict[str, bytes] = OrderedDict()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(cfg.command_concurrency)
        self._persist_lock = asyncio.Lock()
        self.received = 0
        self.rejected = 0

    async def load(self) -> None:
        """Restore the reply cache persisted by an earlier run."""
        saved = await self._kv.get(_KV_KEY, [])
        for request_id, payload in saved[-self.cfg.reply_cache:]:
            self._recent[str(request_id)] = str(payload).encode()

    def handle(self, topic: str, payload: bytes) -> None:
        """Take one incoming message (never raises: a bad request gets an error reply)."""
        self.received += 1
        name = self.topics.command_name(topic)
        if not name:
            log.warning("dropped a message on %s: not a command topic", topic)
            self.rejected += 1
            return
        if len(payload) > self.cfg.command_max_bytes:
            peek = _ID_PEEK.search(payload[:1024])
            request_id = peek.group(1).decode(errors="replace") if peek else None
            self._reject(name, request_id, "payload_too_large",
                         f"command payload of {len(payload)} bytes exceeds the limit of "
                         f"{self.cfg.command_max_bytes} (uplink.command_max_bytes)")
            return
        try:
            request = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as err:
            self._reject(name, None, "bad_json", f"command payload is not JSON: {err}")
            return
        if not isinstance(request, dict):
            self._reject(name, None, "bad_request", "command payload must be a JSON object")
            return
        request_id = request.get("id")
        if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_ID_LEN:
            self._reject(name, None, "bad_request",
                         f"command needs an 'id' string of 1..{MAX_ID_LEN} characters")
            return
        args = request.get("args", {})
        cached = self._recent.get(request_id)
        if cached is not None:
            log.info("command %s id %s was delivered again; re-sending its reply", name,
                     request_id)
            self.outbox.put(PendingReply(request_id, cached))
            return
        if request_id in self._running:
            log.info("command %s id %s is already running; ignoring the repeat", name,
                     request_id)
            return
        task = asyncio.create_task(self._run(name, request_id, args), name=f"cmd[{name}]")
        self._running[request_id] = task

    def _reject(self, name: str, request_id: str | None, code: str, message: str) -> None:
        self.rejected += 1
        if request_id is None:
            log.warning("dropped command %s on %s: %s; no request id to reply to",
                        name, self.topics.base, message)
            return
        log.warning("refused command %s id %s: %s", name, request_id, message)
        reply = {"ok": False, "error": {"code": code, "message": message}}
        self.outbox.put(PendingReply(
            request_id, reply_message(self.gateway_id, request_id, name, reply, self._now_ms())
        ))

    async def _run(self, name: str, request_id: str, args: Any) -> None:
        try:
            async with self._slots:
                reply = await self._execute(name, args)
            payload = reply_message(self.gateway_id, request_id, name, reply, self._now_ms())
            self._remember(request_id, payload)
            self.outbox.put(PendingReply(request_id, payload))
            if not reply.get("ok"):
                log.info("command %s id %s failed: %s", name, request_id, reply.get("error"))
        finally:
            self._running.pop(request_id, None)
        await self._persist()

    def _remember(self, request_id: str, payload: bytes) -> None:
        self._recent[request_id] = payload
        self._recent.move_to_end(request_id)
        while len(self._recent) > self.cfg.reply_cache:
            self._recent.popitem(last=False)

    async def _persist(self) -> None:
        async with self._persist_lock:
            items = [[k, v.decode()] for k, v in self._recent.items()]
            try:
                await self._kv.put(_KV_KEY, items)
            except Exception as err:  # the cache is an optimisation; the reply is queued
                log.warning("could not persist the command reply cache: %s", err)

    async def wait_idle(self, timeout: float) -> None:
        """Wait (at most ``timeout``) for running commands: their replies get queued."""
        tasks = list(self._running.values())
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def cancel(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
