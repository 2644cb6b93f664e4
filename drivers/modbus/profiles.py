"""Device profiles: named register maps in YAML under ``config/profiles/``.

A profile lets a site config say ``profile: eastron-sdm630`` instead of listing 40 registers.
Every profile names the public document its map was taken from (``source``), so a reviewer can
check an address without owning the device. ``defaults`` fills point fields the map shares
(most meters use one function, type and order for every value).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from gateway.config.base import StrictModel

#: The profiles shipped in the repository (a source checkout or an editable install).
DEFAULT_PROFILE_DIR = Path(__file__).resolve().parents[2] / "config" / "profiles"
#: Where a wheel installs the shipped profiles (pyproject's data-files).
INSTALLED_PROFILE_DIR = Path(sys.prefix) / "share" / "fieldgate" / "profiles"
#: Site-local profiles an installer adds; they win over the shipped ones of the same name.
SITE_PROFILE_DIR = Path("/etc/fieldgate/profiles")


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


def profile_dirs() -> list[Path]:
    """Where profiles are looked up, first match wins: $FIELDGATE_PROFILE_DIR (alone, when
    set), else /etc/fieldgate/profiles, the installed ones, the repository's."""
    env = os.environ.get("FIELDGATE_PROFILE_DIR")
    if env:
        return [Path(env)]
    return [SITE_PROFILE_DIR, INSTALLED_PROFILE_DIR, DEFAULT_PROFILE_DIR]


def known_profiles() -> list[str]:
    return sorted({p.stem for d in profile_dirs() for p in d.glob("*.yaml")})


def profile_path(name: str) -> Path:
    for directory in profile_dirs():
        path = directory / f"{name}.yaml"
        if path.is_file():
            return path
    known = ", ".join(["sunspec", *known_profiles()])
    looked = ", ".join(str(d) for d in profile_dirs())
    raise ValueError(f"unknown profile {name!r} (looked in {looked}); known: {known}")


@functools.lru_cache(maxsize=64)
def _load(path: Path, mtime: float) -> LoadedProfile:
    from drivers.modbus.config import POINT

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
            points.append(POINT.validate_python({**profile.defaults, **entry}))
        except ValidationError as err:
            raise ValueError(f"profile {path}: points[{i}] ({entry.get('name')}): {err}") from None
    return LoadedProfile(name=profile.name, source=profile.source, points=points)


def load_profile(name: str) -> LoadedProfile:
    """Load and validate a profile; a broken profile file is a config error naming the file."""
    path = profile_path(name)
    return _load(path, path.stat().st_mtime)
