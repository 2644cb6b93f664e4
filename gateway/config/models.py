"""The config models of the core sections. Driver device models come from the driver registry,
and the whole site model is assembled in :mod:`gateway.config.site`."""

from __future__ import annotations

import enum
import zoneinfo
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from gateway.config.base import DeviceId, StrictModel


class GatewaySection(StrictModel):
    id: DeviceId = Field(description="Gateway id: MQTT client id and topic segment.")
    timezone: str = Field("UTC", description="Site timezone (IANA name) for days and months.")
    state_dir: Path = Field(Path("/var/lib/fieldgate"), description="Where state lives.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r} (use an IANA name like Europe/Berlin)"
            ) from None
        return value


class Durability(enum.StrEnum):
    NORMAL = "normal"
    FULL = "full"


class StoreSection(StrictModel):
    path: Path | None = Field(
        None, description="SQLite file; default <state_dir>/buffer.sqlite3."
    )
    max_bytes: Annotated[int, Field(gt=1_000_000)] = Field(
        2_000_000_000, description="Cap of buffered telemetry; the oldest is dropped beyond it."
    )
    durability: Durability = Field(
        Durability.NORMAL,
        description=(
            "normal: a crash of the process loses nothing committed, a power cut may lose the "
            "last second of commits. full: an fsync per commit, survives power cuts."
        ),
    )
    on_corrupt: Literal["quarantine", "refuse"] = Field(
        "quarantine",
        description=(
            "A damaged store file at start. quarantine: move it aside (<file>.corrupt-<UTC "
            "time>), salvage its readable chunks and events into a new store, emit "
            "store_recovered. refuse: exit with code 65 and one line saying why."
        ),
    )


class PipelineSection(StrictModel):
    queue_batches: Annotated[int, Field(ge=1, le=100_000)] = 256
    queue_samples: Annotated[int, Field(ge=1)] = Field(
        50_000,
        description=(
            "Most samples waiting for the next commit (and the queue's memory, about 120 "
            "bytes a sample): a driver whose batch would pass it waits for a commit. A batch "
            "larger than this goes alone. Lower it on a small box with many devices; too low "
            "delays polls during each cycle's burst."
        ),
    )
    max_commit_samples: Annotated[int, Field(ge=1)] = 50_000
    commit_gather: Annotated[float, Field(ge=0, le=5)] | None = Field(
        None,
        description=(
            "Seconds the pipeline may wait, once a batch arrives, for the rest of a polling "
            "cycle's burst (it commits when no batch came for 20 ms): one commit per cycle "
            "instead of several saves CPU on sites of many devices. Values are stored up to "
            "this much later (not the first after a start). 0 commits at once. Unset: 0.25 "
            "on a site of 10 devices or more, 0 below."
        ),
    )


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


class LoggingSection(StrictModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: LogFormat = LogFormat.TEXT


class ShutdownSection(StrictModel):
    drain_timeout: Annotated[float, Field(gt=0, le=600)] = 10.0
