"""The site config model, assembled from the core sections, the registered components'
sections and the registered drivers' device models (a union discriminated by ``type``)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, create_model

from drivers import registry as drivers
from drivers.base import DeviceConfig
from gateway import components
from gateway.config.base import StrictModel
from gateway.config.models import (
    GatewaySection,
    LoggingSection,
    PipelineSection,
    ShutdownSection,
    StoreSection,
)


class SiteBase(StrictModel):
    gateway: GatewaySection
    store: StoreSection = StoreSection()
    pipeline: PipelineSection = PipelineSection()
    logging: LoggingSection = LoggingSection()
    shutdown: ShutdownSection = ShutdownSection()
    devices: list[DeviceConfig] = []

    def device(self, device_id: str) -> DeviceConfig | None:
        return next((d for d in self.devices if d.id == device_id), None)


@functools.cache
def _unused_device(name: str) -> type[DeviceConfig]:
    """Stands in for a registered device type that the config does not use, so that the
    union still names every type (for the error message) without importing its driver."""
    model: type[DeviceConfig] = create_model(
        f"Unused_{name}", __base__=DeviceConfig, type=(Literal[name], ...))  # type: ignore[arg-type]
    return model


@functools.cache
def _site_model(driver_names: tuple[str, ...], used: frozenset[str] | None,
                section_names: tuple[str, ...]) -> type[SiteBase]:
    models = [drivers.config_model(name) if used is None or name in used
              else _unused_device(name) for name in driver_names]
    device_type: Any
    if len(models) == 1:
        device_type = models[0]
    else:
        device_type = Annotated[Union[tuple(models)], Field(discriminator="type")]  # noqa: UP007
    fields: dict[str, Any] = {
        "devices": (list[device_type], Field([], description="The devices on this site.")),
    }
    specs = components.registry()
    for name in section_names:
        section = specs[name].section
        assert section is not None
        fields[name] = (section, Field(default_factory=section))
    model: type[SiteBase] = create_model("SiteConfig", __base__=SiteBase, **fields)
    return model


def site_model(device_types: Iterable[str] | None = None) -> type[SiteBase]:
    """The site model. With ``device_types`` (the types a config uses), only those drivers'
    config models are imported; the others are known by name only. ``None``: all of them."""
    used = None if device_types is None else frozenset(device_types)
    sections = tuple(n for n, s in components.registry().items() if s.section is not None)
    return _site_model(tuple(drivers.names()), used, sections)


def device_types(data: Mapping[str, Any]) -> set[str]:
    """The device types named in a raw (unvalidated) config mapping."""
    devices = data.get("devices")
    if not isinstance(devices, list):
        return set()
    return {d["type"] for d in devices if isinstance(d, dict) and isinstance(d.get("type"), str)}


def json_schema() -> dict[str, Any]:
    schema = site_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "fieldgate site configuration"
    return schema


Preparer = Callable[[Mapping[str, Any], Path], None]
_PREPARERS: list[Preparer] = []


def register_preparer(fn: Preparer) -> Preparer:
    """Register ``fn(raw_config, path)``, called by the loader with the raw (unvalidated,
    ``${ENV}``-substituted) mapping before the site model is built. For what the model
    depends on: the plugins component registers plugin-provided drivers here, so their
    device types validate. ``fn`` must ignore malformed input (validation reports it with
    line numbers) and may raise ``gateway.errors.StartupError``."""
    if fn not in _PREPARERS:
        _PREPARERS.append(fn)
    return fn


def prepare(data: Mapping[str, Any], path: Path) -> None:
    """Run the registered preparers (components are imported first, so theirs exist)."""
    components.registry()
    for fn in list(_PREPARERS):
        fn(data, path)


Finding = tuple[tuple[Any, ...], str, str]  # (loc, message, "error" | "warning")
Checker = Callable[[Any], Iterable[Finding]]
_CHECKERS: list[Checker] = []


def register_checker(fn: Checker) -> Checker:
    """Register ``fn(site_config)``, called by the loader after the whole site validated, to
    cross-check sections (e.g. rules against devices). It yields ``(loc, message, severity)``
    with ``loc`` the path of the offending value (``("rules", "alarms", 0, "point")``) and
    severity ``"error"`` (the config is refused) or ``"warning"`` (reported, loads)."""
    if fn not in _CHECKERS:
        _CHECKERS.append(fn)
    return fn


def cross_check(config: Any) -> list[Finding]:
    components.registry()
    return [finding for fn in list(_CHECKERS) for finding in fn(config)]


SiteConfig = SiteBase  # the static type; instances are of the assembled subclass

__all__ = ["BaseModel", "SiteBase", "SiteConfig", "cross_check", "device_types", "json_schema",
           "prepare", "register_checker", "register_preparer", "site_model"]
