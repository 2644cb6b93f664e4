"""Posting generated report files to a webhook channel: durable, retried, given up clearly.

A report whose targets name a webhook (``deliver: {webhook: crm}`` or
``delivery.webhook``) gets one row per file in ``siteops_report_deliveries``, inserted in
the transaction that records the report, so a delivery exists exactly when its report does
and survives restarts and kill -9. One sender task works through the due rows (earliest
``next_ts`` first) and POSTs each file as the raw request body to the channel's url with the
channel's headers, secret (HMAC signature) and timeout, on the channels' HTTP client
(:mod:`gateway.channels.http`):

- 2xx: delivered.
- a network error, 5xx, 408 or 429: retried with capped, jittered exponential backoff
  (``delivery.retry_initial`` .. ``retry_max``; a ``Retry-After`` answer is honoured), until
  ``delivery.give_up_after`` seconds after the report was generated;
- any other 4xx: refused for good (retrying the same bytes cannot help).

Giving up (either way) logs an error naming the report, the file and the channel and
commits ``report_delivery_failed``. Delivery is at least once (a kill during a POST sends
the file again): ``X-Fieldgate-Delivery`` is the same on every attempt, for the receiver to
drop a repeat. Retention keeps a report's files while any delivery of it is pending.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import hashlib
import hmac
import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import events
from gateway.channels.base import ChannelTarget
from gateway.channels.http import HttpResponse, post
from gateway.model import Event, event_id
from gateway.store import Tx
from gateway.supervisor import backoff_delay

if TYPE_CHECKING:
    from gateway.siteops.component import SiteOpsComponent

log = logging.getLogger(__name__)

MIGRATIONS = [
    """
    CREATE TABLE siteops_report_deliveries (
        report_id  TEXT NOT NULL,
        channel    TEXT NOT NULL,
        file       TEXT NOT NULL,
        status     TEXT NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 0,
        created_ts INTEGER NOT NULL,
        next_ts    INTEGER NOT NULL,
        last_error TEXT,
        done_ts    INTEGER,
        PRIMARY KEY (report_id, channel, file)
    ) WITHOUT ROWID;
    CREATE INDEX siteops_report_deliveries_due ON siteops_report_deliveries (status, next_ts);
    """,
]

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
CONTENT_TYPES = {".csv": "text/csv; charset=utf-8", ".html": "text/html; charset=utf-8"}
#: Longest idle wait between looks at the queue (real seconds); a new row wakes it at once.
POLL_S = 1.0


class Refused(Exception):
    """The receiver did not take the file; ``retry_after`` seconds if it said so."""

    def __init__(self, message: str, retryable: bool, retry_after: float | None = None,
                 local: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        #: Not the receiver's answer: the file or the channel is gone on the gateway.
        self.local = local


def retry_after_s(value: str | None, now_ms: int) -> float | None:
    """``Retry-After``: delay-seconds or an HTTP date (RFC 9110 10.2.3); None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = email.utils.parsedate_to_datetime(value)
        return max(when.timestamp() - now_ms / 1000, 0.0)
    return None


def judge(response: HttpResponse, now_ms: int) -> None:
    """Raise :class:`Refused` unless the answer is 2xx."""
    status = response.status
    if 200 <= status < 300:
        return
    retryable = status >= 500 or status in (408, 429)
    raise Refused(f"HTTP {status}: {response.text()[:200]}", retryable,
                  retry_after_s(response.headers.get("retry-after"), now_ms))


def request_headers(target: ChannelTarget, report: dict[str, Any], path: Path, data: bytes,
                    gateway: str, attempt: int) -> dict[str, str]:
    digest = hashlib.sha256(data)
    headers = {**target.headers,
               "Content-Type": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
               "Content-Disposition": f'attachment; filename="{path.name}"',
               "Content-Digest": f"sha-256=:{base64.b64encode(digest.digest()).decode()}:",
               "X-Fieldgate-SHA256": digest.hexdigest(),
               "X-Fieldgate-Event": events.REPORT_GENERATED,
               "X-Fieldgate-Delivery": f"{report['report_id']}/{path.name}",
               "X-Fieldgate-Gateway": gateway,
               "X-Fieldgate-Report": report["name"],
               "X-Fieldgate-Report-Id": report["report_id"],
               "X-Fieldgate-Period": report["period"],
               "X-Fieldgate-Attempt": str(attempt)}
    if target.secret:
        mac = hmac.new(target.secret.encode(), data, hashlib.sha256).hexdigest()
        headers["X-Fieldgate-Signature"] = f"sha256={mac}"
    return headers


class ReportWebhooks:
    """The durable webhook deliveries of the reports (one sender task)."""

    def __init__(self, comp: SiteOpsComponent) -> None:
        self.comp = comp
        self.ctx = comp.ctx
        self.cfg = comp.section.reports.delivery
        channels = getattr(comp.ctx.site, "channels", None)
        self.targets: dict[str, ChannelTarget] = dict(getattr(channels, "targets", None) or {})
        self.wake = asyncio.Event()
        self._tls: dict[str, ssl.SSLContext | None] = {}  # per channel, at its first POST

    async def queue(self, tx: Tx, report_id: str, channel: str, files: list[Path],
                    now_ms: int) -> None:
        """One pending row per file, in ``tx`` (the transaction that records the report)."""
        await tx.executemany(
            "INSERT OR IGNORE INTO siteops_report_deliveries (report_id, channel, file, "
            "status, created_ts, next_ts) VALUES (?, ?, ?, ?, ?, ?)",
            [(report_id, channel, str(f), PENDING, now_ms, now_ms) for f in files])

    def notify(self) -> None:
        self.wake.set()

    async def run(self) -> None:
        while True:
            await self.run_once()

    async def run_once(self) -> None:
        """Attempt the earliest due delivery, or wait for one (a pending one not yet due is
        looked at again after at most POLL_S)."""
        self.wake.clear()  # before the query, so a row queued after it is not missed
        row = await self.ctx.store.query_one(
            "SELECT d.report_id, d.channel, d.file, d.attempts, d.created_ts, d.next_ts, "
            "r.name, r.period FROM siteops_report_deliveries d LEFT JOIN siteops_reports r "
            "ON r.id = d.report_id WHERE d.status = ? ORDER BY d.next_ts LIMIT 1",
            (PENDING,))
        if row is None:
            await self.wake.wait()  # idle: nothing pending costs nothing
            return
        wait = (row[5] - self.ctx.clock.now_ms()) / 1000
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait, POLL_S)):  # not wait_for: see store/outbox.py
                    await self.wake.wait()
            return
        report_id, channel, file, attempts, created, _, name, period = row
        report = {"report_id": report_id, "name": name or "", "period": period or ""}
        await self.attempt(report, channel, Path(file), attempts + 1, created)

    async def attempt(self, report: dict[str, Any], channel: str, path: Path, attempt: int,
                      created_ts: int) -> None:
        # Counted, and the next attempt scheduled, before the POST: a process killed (or a
        # task that failed) during it resumes with the next attempt after the backoff.
        await self._update(report["report_id"], channel, path, PENDING, attempt,
                           self._next_ts(attempt, None, created_ts), None)
        try:
            await self._post(report, channel, path, attempt)
        except Refused as err:
            now = self.ctx.clock.now_ms()
            if err.retryable and now < self._deadline(created_ts):
                next_ts = self._next_ts(attempt, err.retry_after, created_ts)
                log.warning("report %s: posting %s to channel %s failed (attempt %d: %s); "
                            "retrying in %.1f s", report["name"], path.name, channel,
                            attempt, err, (next_ts - now) / 1000)
                await self._update(report["report_id"], channel, path, PENDING, attempt,
                                   next_ts, str(err))
                return
            why = ("it cannot be sent" if err.local else "the receiver refused it"
                   if not err.retryable else f"still failing {self.cfg.give_up_after:g} s "
                   "after the report was generated")
            await self._give_up(report, channel, path, attempt, str(err), not err.retryable,
                                why)
            return
        log.info("report %s: %s posted to channel %s (attempt %d)", report["name"],
                 path.name, channel, attempt)
        await self._update(report["report_id"], channel, path, DELIVERED, attempt, None, None)

    def _deadline(self, created_ts: int) -> int:
        return created_ts + int(self.cfg.give_up_after * 1000)

    def _next_ts(self, attempt: int, retry_after: float | None, created_ts: int) -> int:
        """When to try again after ``attempt`` failed: the backoff or ``Retry-After``, no
        later than the give-up deadline (the last attempt)."""
        delay = (retry_after if retry_after is not None else
                 backoff_delay(attempt, self.cfg.retry_initial, self.cfg.retry_max))
        return min(self.ctx.clock.now_ms() + int(delay * 1000), self._deadline(created_ts))

    async def _post(self, report: dict[str, Any], channel: str, path: Path,
                    attempt: int) -> None:
        target = self.targets.get(channel)
        if target is None or not target.url:
            raise Refused(f"channel {channel!r} is no longer configured (or has no url) in "
                          "channels.targets", retryable=False, local=True)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as err:
            raise Refused(f"cannot read {path} ({err.strerror})", retryable=False,
                          local=True) from err
        headers = request_headers(target, report, path, data, self.ctx.site.gateway.id,
                                  attempt)
        try:
            if channel not in self._tls:
                self._tls[channel] = target.tls()
            response = await post(target.url, data, headers, target.timeout,
                                  self._tls[channel])
        except OSError as err:
            raise Refused(f"{type(err).__name__}: {err}", retryable=True) from err
        judge(response, self.ctx.clock.now_ms())

    async def _update(self, report_id: str, channel: str, path: Path, status: str,
                      attempts: int, next_ts: int | None, error: str | None,
                      tx_events: list[Event] | None = None) -> None:
        now = self.ctx.clock.now_ms()
        async with self.ctx.store.transaction() as tx:
            await tx.execute(
                "UPDATE siteops_report_deliveries SET status = ?, attempts = ?, "
                "next_ts = COALESCE(?, next_ts), last_error = COALESCE(?, last_error), "
                "done_ts = ? WHERE report_id = ? AND channel = ? AND file = ?",
                (status, attempts, next_ts, error[:500] if error else None,
                 None if status == PENDING else now, report_id, channel, str(path)))
            if tx_events:
                await tx.add_events(tx_events)

    async def _give_up(self, report: dict[str, Any], channel: str, path: Path, attempts: int,
                       error: str, permanent: bool, why: str) -> None:
        log.error("report %s (%s): giving up posting %s to channel %s after %d attempt(s), "
                  "%s: %s. Check channels.targets.%s (url, headers, secret) and the receiver; "
                  "`reports.run` generates and posts the report again", report["name"],
                  report["period"], path.name, channel, attempts, why, error, channel)
        body = {"report_id": report["report_id"], "name": report["name"],
                "period": report["period"], "channel": channel, "file_path": str(path),
                "attempts": attempts, "error": error[:500], "permanent": permanent}
        ev = Event(events.REPORT_DELIVERY_FAILED, body, id=event_id(
            events.REPORT_DELIVERY_FAILED, report["report_id"], channel, path.name))
        await self._update(report["report_id"], channel, path, FAILED, attempts, None, error,
                           [ev])

    async def state(self, report_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """report id -> its webhook deliveries, for ``reports.list``."""
        if not report_ids:
            return {}
        marks = ",".join("?" * len(report_ids))
        rows = await self.ctx.store.query(
            "SELECT report_id, channel, file, status, attempts, next_ts, last_error, done_ts "
            f"FROM siteops_report_deliveries WHERE report_id IN ({marks}) "
            "ORDER BY channel, file", tuple(report_ids))
        out: dict[str, list[dict[str, Any]]] = {}
        for rid, channel, file, status, attempts, next_ts, error, done in rows:
            out.setdefault(rid, []).append({
                "channel": channel, "file": file, "status": status, "attempts": attempts,
                "next_attempt_ts": next_ts if status == PENDING else None,
                "last_error": error, "done_ts": done})
        return out
