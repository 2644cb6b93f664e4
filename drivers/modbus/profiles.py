"""Device profiles: named register maps in YAML under ``config/profiles/``.

A profile lets a site config say ``profile: eastron-sdm630`` instead of listing 40 registers.
Every profile names the public document its map was taken from (``source``), so a reviewer can
check an address without owning the device. ``defaults`` fills point fields the map shares
(most meters use one function, type and order for every value).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from gateway.config.base import StrictModel

#: Override with FIELDGATE_PROFILE_DIR (a packaged install keeps profiles elsewhere).
DEFAULT_PROFILE_DIR = Path(__file__).resolve().parents[2] / "config" / "profiles"


class Profile(StrictModel):
    name: str = Field(description="Manufacturer and model.")
    source: str = Field(min_length=10, description="Public document the map comes from.")
    description: str = ""
    defaults: dict[str, Any] = {}
    points: list[Any] = Field(min_length=1)


class LoadedProfile(StrictModel):
    name: str
    source: str
    points: list[Any]


def profile_dir() -> Path:
    return Path(os.environ.get("FIELDGATE_PROFILE_DIR", DEFAULT_PROFILE_DIR))


def known_profiles() -> list[str]:
    return sorted(p.stem for p in profile_dir().glob("*.yaml"))


def profile_path(name: str) -> Path:
    path = profile_dir() / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(["sunspec", *known_profiles()])
        raise ValueError(f"unknown profile {name!r} (looked in {profile_dir()}); known: {known}")
    return path


@functools.lru_cache(maxsize=64)
def _load(path: Path, mtime: float) -> LoadedProfile:
    from drivers.modbus.config import PointConfig

    with path.open(encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    try:
        profile = Profile.model_validate(raw)
    except ValidationError as err:
        raise ValueError(f"profile {path}: {err}") from None
    points = []
    for i, entry in enumerate(profile.points):
        if not isinstance(entry, dict):
            raise ValueError(f"profile {path}: points[{i}] is not a mapping")
        try:
            points.append(PointConfig.model_validate({**profile.defaults, **entry}))
        except ValidationError as err:
            raise ValueError(f"profile {path}: points[{i}] ({entry.get('name')}): {err}") from None
    return LoadedProfile(name=profile.name, source=profile.source, points=points)


def load_profile(name: str) -> LoadedProfile:
    """Load and validate a profile; a broken profile file is a config error naming the file."""
    path = profile_path(name)
    return _load(path, path.stat().st_mtime)
