"""The command downlink: ``cmd/<name>`` in, ``reply`` out, through the command registry.

A request is ``{"id": "<request id>", "args": {...}}`` on ``<base>/cmd/<name>``. QoS 1 means
the broker may deliver a request twice, so a request id is executed once: the replies of the
last ``reply_cache`` ids are kept (and persisted in the store's KV, so a redelivery after a
restart is still answered from the cache), and a repeat gets the same reply again. Before the
registry, a request passes :class:`gateway.uplink.auth.CommandPolicy` (the allow-list and, when
configured, its HMAC signature). Every malformed or refused request gets an error reply, or,
when it carries no usable id, is dropped with a rate-limited log line. Commands run in their
own tasks, so a slow one never blocks the receive loop, and they outlive a reconnect: a reply
whose connection died is sent on the next one.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.commands import request_source
from gateway.safejson import BadJson, RateLimitedLog, loads
from gateway.store.kv import KV
from gateway.uplink.auth import CommandPolicy, Refused
from gateway.uplink.config import UplinkSection
from gateway.uplink.forwarder import PendingReply, ReplyOutbox
from gateway.uplink.wire import Topics, reply_message

log = logging.getLogger(__name__)

MAX_ID_LEN = 128
_KV_KEY = "replies"
_NONCES_KEY = "nonces"
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
        policy: CommandPolicy,
    ) -> None:
        self.topics = topics
        self.cfg = cfg
        self.gateway_id = gateway_id
        self._execute = execute
        self.outbox = outbox
        self._kv = kv
        self._now_ms = now_ms
        self.policy = policy
        self._warn = RateLimitedLog(log)
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
        if self.policy.signing is not None:
            self.policy.restore_nonces(await self._kv.get(_NONCES_KEY, {}))

    def handle(self, topic: str, payload: bytes) -> None:
        """Take one incoming message. Never raises: a bad request gets an error reply (or a
        rate-limited log line when it has no usable id), and a fault while handling one
        request is logged and answered, so the next command still works."""
        self.received += 1
        try:
            self._handle(topic, payload)
        except Exception as err:
            name = self.topics.command_name(topic) or topic
            log.exception("command %s: handling failed; the downlink goes on", name)
            self._reject(name, _peek_id(payload), "internal",
                         f"the gateway failed to handle this command: {type(err).__name__}")

    def _handle(self, topic: str, payload: bytes) -> None:
        name = self.topics.command_name(topic)
        if not name:
            self.rejected += 1
            self._warn.warning("topic", "dropped a message on %s: not a command topic", topic)
            return
        if len(payload) > self.cfg.command_max_bytes:
            self._reject(name, _peek_id(payload), "payload_too_large",
                         f"command payload of {len(payload)} bytes exceeds the limit of "
                         f"{self.cfg.command_max_bytes} (uplink.command_max_bytes)")
            return
        try:
            request = loads(payload)
        except BadJson as err:
            self._reject(name, _peek_id(payload), "bad_json", f"command payload: {err}")
            return
        if not isinstance(request, dict):
            self._reject(name, None, "bad_request", "command payload must be a JSON object")
            return
        try:
            request = self.policy.unwrap(name, request)
        except Refused as refused:
            if refused.code == "replayed" and self._is_known(name, refused.request_id):
                return  # the broker delivered a signed request again: answered as a repeat
            self._reject(name, refused.request_id, refused.code, refused.message)
            return
        request_id = request.get("id")
        if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_ID_LEN:
            self._reject(name, None, "bad_request",
                         f"command needs an 'id' string of 1..{MAX_ID_LEN} characters")
            return
        try:
            self.policy.check_allowed(name, request_id)
        except Refused as refused:
            self._reject(name, request_id, refused.code, refused.message)
            return
        if self._is_known(name, request_id):
            return
        args = request.get("args", {})
        task = asyncio.create_task(self._run(name, request_id, args), name=f"cmd[{name}]")
        self._running[request_id] = task

    def _is_known(self, name: str, request_id: str | None) -> bool:
        """A repeat of a request id: re-send its reply, or ignore it while it runs."""
        if request_id is None:
            return False
        cached = self._recent.get(request_id)
        if cached is not None:
            log.info("command %s id %s was delivered again; re-sending its reply", name,
                     request_id)
            self.outbox.put(PendingReply(request_id, cached))
            return True
        if request_id in self._running:
            log.info("command %s id %s is already running; ignoring the repeat", name,
                     request_id)
            return True
        return False

    def _reject(self, name: str, request_id: str | None, code: str, message: str) -> None:
        self.rejected += 1
        if request_id is None:
            self._warn.warning(f"noid:{code}:{message[:32]}", "dropped command %s on %s: %s; "
                               "no request id to reply to", name, self.topics.base, message)
            return
        self._warn.warning(f"refused:{code}:{message[:32]}", "refused command %s id %s: %s",
                           name, request_id, message)
        reply = {"ok": False, "error": {"code": code, "message": message}}
        self.outbox.put(PendingReply(
            request_id, reply_message(self.gateway_id, request_id, name, reply, self._now_ms())
        ))

    async def _run(self, name: str, request_id: str, args: Any) -> None:
        request_source.set(f"mqtt request {request_id}")  # this task's own context
        try:
            async with self._slots:
                try:
                    reply = await self._execute(name, args)
                except Exception as err:  # the registry never raises; a transport might
                    log.exception("command %s id %s failed", name, request_id)
                    reply = {"ok": False, "error": {
                        "code": "internal", "message": f"{type(err).__name__}: {err}"}}
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
                if self.policy.signing is not None:
                    await self._kv.put(_NONCES_KEY, dict(self.policy.nonces))
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


def _peek_id(payload: bytes) -> str | None:
    """The request id of a payload that cannot be parsed, when one can be read from it."""
    peek = _ID_PEEK.search(payload[:4096])
    return peek.group(1).decode(errors="replace") if peek else None
