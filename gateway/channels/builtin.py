"""The built-in channels: a generic signed webhook and the DingTalk, Lark/Feishu and WeCom
group robots, each in its platform's documented request format and signature scheme.

- webhook: JSON POST; ``X-Fieldgate-Signature: sha256=<hex HMAC-SHA256(secret, body)>``.
- DingTalk custom robot: ``sign = urlencode(base64(HMAC-SHA256(key=secret,
  msg=timestamp + "\\n" + secret)))`` with ``timestamp`` in ms, both as query parameters;
  ``msgtype`` markdown or text; the reply is ``{"errcode": 0}``.
- Lark/Feishu custom bot: ``sign = base64(HMAC-SHA256(key=timestamp + "\\n" + secret,
  msg=""))`` with ``timestamp`` in seconds, both in the JSON body; ``msg_type`` text or
  interactive (a card); the reply is ``{"code": 0}``.
- WeCom group robot: the URL carries the robot ``key``; ``msgtype`` markdown or text; no
  signature; the reply is ``{"errcode": 0}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
from typing import Any

from gateway.channels.base import (
    Channel,
    HttpRequest,
    Message,
    check_errcode,
    register_channel,
)
from gateway.channels.http import HttpResponse

WECOM_URL = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _with_query(url: str, **params: str) -> str:
    sep = "&" if urllib.parse.urlsplit(url).query else "?"
    return url + sep + "&".join(f"{k}={v}" for k, v in params.items())


@register_channel("webhook")
class WebhookChannel(Channel):
    """Any HTTP endpoint: the whole message and the event as JSON, optionally signed."""

    msgtypes = ("json",)

    def build_request(self, message: Message, now_ms: int) -> HttpRequest:
        body = _json({"event_id": message.event_id, "type": message.event_type,
                      "title": message.title, "text": message.text,
                      "severity": message.severity, "device": message.device,
                      "event": dict(message.event), "sent_ts": now_ms})
        headers = {"X-Fieldgate-Event": message.event_type,
                   "X-Fieldgate-Delivery": message.event_id}
        if self.target.secret:
            digest = hmac.new(self.target.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Fieldgate-Signature"] = f"sha256={digest}"
        assert self.target.url is not None
        return HttpRequest(self.target.url, body, headers)


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


@register_channel("dingtalk")
class DingTalkChannel(Channel):
    msgtypes = ("markdown", "text")

    def build_request(self, message: Message, now_ms: int) -> HttpRequest:
        if self.msgtype == "markdown":
            payload: dict[str, Any] = {"msgtype": "markdown", "markdown": {
                "title": message.title, "text": f"#### {message.title}\n\n{message.text}"}}
        else:
            payload = {"msgtype": "text", "text": {"content": f"{message.title}\n{message.text}"}}
        assert self.target.url is not None
        url = self.target.url
        if self.target.secret:
            url = _with_query(url, timestamp=str(now_ms),
                              sign=dingtalk_sign(self.target.secret, now_ms))
        return HttpRequest(url, _json(payload), {})

    def check_response(self, response: HttpResponse) -> None:
        check_errcode(response, "errcode")


def lark_sign(secret: str, timestamp_s: int) -> str:
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


@register_channel("lark")
class LarkChannel(Channel):
    msgtypes = ("text", "interactive")

    def build_request(self, message: Message, now_ms: int) -> HttpRequest:
        payload: dict[str, Any]
        if self.msgtype == "interactive":
            template = "red" if message.severity in ("critical", "major") else "blue"
            payload = {"msg_type": "interactive", "card": {
                "header": {"title": {"tag": "plain_text", "content": message.title},
                           "template": template},
                "elements": [{"tag": "div",
                              "text": {"tag": "lark_md", "content": message.text}}]}}
        else:
            payload = {"msg_type": "text",
                       "content": {"text": f"{message.title}\n{message.text}"}}
        if self.target.secret:
            ts = now_ms // 1000
            payload = {"timestamp": str(ts), "sign": lark_sign(self.target.secret, ts),
                       **payload}
        assert self.target.url is not None
        return HttpRequest(self.target.url, _json(payload), {})

    def check_response(self, response: HttpResponse) -> None:
        check_errcode(response, "code", "StatusCode")


@register_channel("wecom")
class WeComChannel(Channel):
    msgtypes = ("markdown", "text")

    def validate(self) -> None:
        if not self.target.url and not self.target.key:
            raise ValueError(f"channels.targets.{self.name}: wecom needs a key (or a url)")

    def build_request(self, message: Message, now_ms: int) -> HttpRequest:
        if self.msgtype == "markdown":
            payload: dict[str, Any] = {"msgtype": "markdown", "markdown": {
                "content": f"**{message.title}**\n{message.text}"}}
        else:
            payload = {"msgtype": "text", "text": {"content": f"{message.title}\n{message.text}"}}
        url = self.target.url or WECOM_URL
        if self.target.key:
            url = _with_query(url, key=urllib.parse.quote(self.target.key, safe=""))
        return HttpRequest(url, _json(payload), {})

    def check_response(self, response: HttpResponse) -> None:
        check_errcode(response, "errcode")


BUILTIN_CHANNELS: tuple[type[Channel], ...] = (
    WebhookChannel, DingTalkChannel, LarkChannel, WeComChannel)
