"""Notification channels (webhook, DingTalk, Lark/Feishu, WeCom, and plugin-registered ones)."""

from __future__ import annotations

from gateway.channels.base import (
    Channel,
    ChannelTarget,
    DeliveryError,
    HttpRequest,
    Message,
    register_channel,
)

__all__ = ["Channel", "ChannelTarget", "DeliveryError", "HttpRequest", "Message",
           "register_channel"]
