"""The ``channels`` component: alarm (and other event) notices to chat groups and webhooks.

Config (top-level key ``channels``)::

    channels:
      targets:
        ops-ding: {type: dingtalk, url: "https://oapi.dingtalk.com/robot/send?access_token=..",
                   secret: "${DING_SECRET}", msgtype: markdown}
        crm: {type: webhook, url: "https://crm.example.com/hook", secret: "${CRM_SECRET}"}
      routes:
        - channels: [ops-ding]
          events: [alarm_created, alarm_resolved]
          severities: [critical, major]
          devices: ["inv-*"]
      templates:
        alarm_created: {title: "[{severity}] {device}", text: "{message} (value {value})"}
"""

from __future__ import annotations

import asyncio
import logging
import string
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from gateway.channels.base import Channel, ChannelTarget, channel_types
from gateway.channels.delivery import CONSUMER, MIGRATIONS, Router, Sender
from gateway.commands import Command, NoArgs
from gateway.components import (
    Component,
    ComponentContext,
    ComponentSpec,
    TaskFactory,
    register_component,
)
from gateway.config.base import PositiveSeconds, StrictModel
from gateway.events import ALARM_CREATED, ALARM_RESOLVED, DEVICE_STATUS_CHANGED, QUOTA_EXCEEDED

log = logging.getLogger(__name__)


class Template(StrictModel):
    title: str = Field(description="Title; {field} placeholders from the event body and "
                       "{id} {type} {ts} {gateway} {device}.")
    text: str = Field(description="Body (markdown for markdown channels).")

    @field_validator("title", "text")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            list(string.Formatter().parse(value))
        except ValueError as err:
            raise ValueError(f"bad template {value!r}: {err} (write {{{{ for a brace)") from None
        return value


DEFAULT_TEMPLATES: dict[str, Template] = {
    ALARM_CREATED: Template(
        title="[{severity}] {device}: {message}",
        text="Alarm **{rule}** on **{device}** ({point} = {value})\n\n{message}\n\n"
             "Since {ts} on gateway {gateway}. Alarm id {alarm_id}"),
    ALARM_RESOLVED: Template(
        title="[resolved] {device}: {message}",
        text="Alarm **{rule}** on **{device}** cleared at {ts} (last value {last_value})."),
    DEVICE_STATUS_CHANGED: Template(
        title="{device} is {new_status}",
        text="Device **{device}** changed from {old_status} to **{new_status}** at {ts}. "
             "{reason}"),
    QUOTA_EXCEEDED: Template(
        title="Quota {quota} at {usage_pct}%",
        text="Quota **{quota}** used {usage_kwh} of {budget_kwh} kWh ({usage_pct}%) for the "
             "{period} {period_start}..{period_end}."),
}
GENERIC_TEMPLATE = Template(title="{type} {device}", text="Event {type} ({id}) at {ts}.")


class Route(StrictModel):
    channels: list[str] = Field(min_length=1, description="Target names to notify.")
    events: list[str] = Field([ALARM_CREATED],
                              description="Event types this route takes.")
    severities: list[str] = Field([], description="Alarm severities; empty: all.")
    devices: list[str] = Field([], description="Device id globs (fnmatch); empty: all.")
    template: str | None = Field(None, description="Template name; default: per event type.")


class ChannelsSection(StrictModel):
    targets: dict[str, ChannelTarget] = Field({}, description="Named destinations.")
    routes: list[Route] = Field([], description="Which events go to which targets.")
    templates: dict[str, Template] = Field({}, description="Named message templates; a "
                                           "template named like an event type is its default.")
    retry_initial: PositiveSeconds = Field(2.0, description="First retry delay, seconds.")
    retry_max: PositiveSeconds = Field(300.0, description="Longest retry delay, seconds.")
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = Field(
        30, description="Attempts before a notice is given up (logged as an error).")

    @model_validator(mode="after")
    def _references(self) -> ChannelsSection:
        for i, route in enumerate(self.routes):
            for name in route.channels:
                if name not in self.targets:
                    raise ValueError(f"routes[{i}] names channel {name!r}, which is not in "
                                     f"channels.targets ({', '.join(self.targets) or 'none'})")
            if route.template is not None and route.template not in self.templates:
                raise ValueError(f"routes[{i}] names template {route.template!r}, which is "
                                 "not in channels.templates")
        return self

    def template_for(self, route: Route, event_type: str) -> Template:
        if route.template is not None:
            return self.templates[route.template]
        return (self.templates.get(event_type) or DEFAULT_TEMPLATES.get(event_type)
                or GENERIC_TEMPLATE)


class ChannelsComponent(Component):
    name = "channels"

    def __init__(self, ctx: ComponentContext[ChannelsSection]) -> None:
        self.ctx = ctx
        self.section = section = ctx.config
        self.channels: dict[str, Channel] = {}
        self.wake = {name: asyncio.Event() for name in section.targets}
        self.router = Router(ctx.store, section, ctx.site.gateway.id, self.wake)
        self.senders: dict[str, Sender] = {}

    async def start(self) -> None:
        types = channel_types()  # plugin channel types were registered by `plugins`
        for name, target in self.section.targets.items():
            cls = types.get(target.type)
            if cls is None:
                raise ValueError(f"channels.targets.{name}: unknown channel type "
                                 f"{target.type!r}; known: {', '.join(sorted(types))}")
            self.channels[name] = cls(name, target)
            self.senders[name] = Sender(self.ctx.store, self.channels[name], self.section,
                                        self.wake[name], self.ctx.clock)
        await self.ctx.store.register_consumer(CONSUMER)
        self.ctx.commands.register(Command("channels.stats", NoArgs, self._stats,
                                           "Pending, sent, failed notices per channel.",
                                           read_only=True))

    def tasks(self) -> Iterable[tuple[str, TaskFactory]]:
        yield "channels-router", self.router.run
        for name, sender in self.senders.items():
            yield f"channel[{name}]", sender.run

    async def _stats(self, _: NoArgs) -> dict[str, Any]:
        return {"routed": self.router.routed,
                "channels": {n: await s.stats() for n, s in self.senders.items()}}


def _factory(ctx: ComponentContext[ChannelsSection]) -> Component | None:
    if not ctx.config.targets:
        return None  # nothing to notify: do not hold events in the outbox for us
    return ChannelsComponent(ctx)


register_component(ComponentSpec("channels", _factory, section=ChannelsSection,
                                 after=("plugins",), migrations=MIGRATIONS))
