"""Notification channels: where alarm notices go (a webhook, a DingTalk/Lark/WeCom group).

A channel turns a rendered :class:`Message` into one HTTP request in its platform's format
and judges the platform's answer. Channels register by type name, built-in and plugin ones
alike::

    @register_channel("pagerduty")
    class PagerDutyChannel(Channel):
        msgtypes = ("text",)

        def build_request(self, message, now_ms): ...

(a plugin returns such classes from its ``register_channels`` hook). Delivery, retries and
idempotency are the channels component's job, not the channel's.
"""

from __future__ import annotations

import json
import logging
import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import Field, model_validator

from gateway.channels.http import HttpResponse, post, tls_context
from gateway.config.base import InputFile, PositiveSeconds, StrictModel

log = logging.getLogger(__name__)


class ChannelTarget(StrictModel):
    """One configured destination (``channels.targets.<name>``)."""

    type: str = Field(description="Channel type: webhook, dingtalk, lark, wecom, or a "
                      "plugin's.")
    url: str | None = Field(None, description="Webhook / robot URL.")
    key: str | None = Field(None, description="WeCom robot key (instead of url).")
    secret: str | None = Field(None, description="Signing secret; use ${ENV_VAR}.")
    msgtype: str | None = Field(None, description="Message format; default per type.")
    timeout: PositiveSeconds = Field(10.0, description="Seconds per HTTP request.")
    headers: dict[str, str] = Field({}, description="Extra HTTP headers.")
    ca_file: InputFile | None = Field(
        None, description="CA bundle (PEM) to verify an https url; default: the system store.")
    cert_file: InputFile | None = Field(
        None, description="Client certificate (PEM) for mutual TLS.")
    key_file: InputFile | None = Field(None, description="Private key (PEM) of cert_file.")
    options: dict[str, Any] = Field({}, description="Options of plugin channel types.")

    @model_validator(mode="after")
    def _pairs(self) -> ChannelTarget:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together; set both or neither")
        return self

    def tls(self) -> ssl.SSLContext | None:
        """A new client TLS context of this target (None: the default verification); the
        callers keep it for the life of the component (a reload reads the files again)."""
        return tls_context(self.ca_file, self.cert_file, self.key_file)


@dataclass(frozen=True, slots=True)
class Message:
    """A notice rendered from one event for one channel."""

    event_id: str
    event_type: str
    title: str
    text: str
    severity: str | None = None
    device: str | None = None
    event: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"event_id": self.event_id, "event_type": self.event_type,
                           "title": self.title, "text": self.text, "severity": self.severity,
                           "device": self.device, "event": dict(self.event)}, default=str)

    @classmethod
    def from_json(cls, text: str) -> Message:
        return cls(**json.loads(text))


@dataclass(frozen=True, slots=True)
class HttpRequest:
    url: str
    body: bytes
    headers: Mapping[str, str]


class DeliveryError(Exception):
    """The platform did not take the message. ``retryable`` False: retrying cannot help."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Channel(ABC):
    channel_type: ClassVar[str] = ""
    #: Accepted ``msgtype`` values; the first is the default.
    msgtypes: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(self, name: str, target: ChannelTarget) -> None:
        self.name = name
        self.target = target
        self.msgtype = target.msgtype or self.msgtypes[0]
        self._tls: tuple[ssl.SSLContext | None] | None = None  # built at the first send
        if self.msgtype not in self.msgtypes:
            raise ValueError(f"channels.targets.{name}: msgtype {self.msgtype!r} is not "
                             f"supported by {self.channel_type} (use one of "
                             f"{', '.join(self.msgtypes)})")
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the target when its config cannot work."""
        if not self.target.url:
            raise ValueError(f"channels.targets.{self.name}: {self.channel_type} needs a url")

    @abstractmethod
    def build_request(self, message: Message, now_ms: int) -> HttpRequest:
        """The HTTP request that delivers ``message`` (signed with ``now_ms`` if needed)."""

    def check_response(self, response: HttpResponse) -> None:
        """Raise :class:`DeliveryError` unless the platform accepted the message."""
        check_http_status(response)

    async def send(self, message: Message, now_ms: int) -> None:
        req = self.build_request(message, now_ms)
        headers = {"Content-Type": "application/json; charset=utf-8", **req.headers,
                   **self.target.headers}
        try:
            if self._tls is None:
                self._tls = (self.target.tls(),)
            response = await post(req.url, req.body, headers, self.target.timeout,
                                  self._tls[0])
        except OSError as err:
            raise DeliveryError(f"{type(err).__name__}: {err}") from err
        self.check_response(response)


def check_http_status(response: HttpResponse) -> None:
    if 200 <= response.status < 300:
        return
    retryable = response.status >= 500 or response.status in (408, 429)
    raise DeliveryError(f"HTTP {response.status}: {response.text()[:200]}", retryable)


def check_errcode(response: HttpResponse, *keys: str) -> None:
    """Robots answer HTTP 200 with ``{"errcode": 0}`` (DingTalk, WeCom) or ``{"code": 0}``
    (Lark); anything else is a refusal (bad signature, rate limit, keyword filter)."""
    check_http_status(response)
    try:
        reply = json.loads(response.body or b"{}")
    except ValueError as err:
        raise DeliveryError(f"unreadable reply: {response.text()[:200]}") from err
    for key in keys:
        if key in reply:
            if reply[key] not in (0, "0"):
                raise DeliveryError(f"refused: {key}={reply[key]} {reply}")
            return
    raise DeliveryError(f"unexpected reply: {reply}")


_REGISTRY: dict[str, type[Channel]] = {}
C = TypeVar("C", bound=type[Channel])


def register_channel(name: str) -> Callable[[C], C]:
    """Class decorator: register a channel type under ``name``."""

    def deco(cls: C) -> C:
        cls.channel_type = name
        register_channel_class(cls)
        return cls

    return deco


def register_channel_class(cls: type[Channel]) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Channel)) or not cls.channel_type:
        raise TypeError(f"{cls!r} is not a Channel subclass with a channel_type")
    existing = _REGISTRY.get(cls.channel_type)
    if existing is not None and existing is not cls:
        raise ValueError(f"channel type {cls.channel_type!r} is already registered by "
                         f"{existing.__module__}.{existing.__qualname__}")
    _REGISTRY[cls.channel_type] = cls


def channel_types() -> Mapping[str, type[Channel]]:
    from gateway.channels import builtin  # noqa: F401 - registers the built-in types

    return dict(_REGISTRY)
