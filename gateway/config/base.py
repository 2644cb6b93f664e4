"""The base every config model derives from (unknown keys are errors, values are frozen),
and the helpers models use to report located problems."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

#: Equal sets of given field names, shared by the frozen models that have them.
_FIELDS_SETS: dict[frozenset[str], set[str]] = {}


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _share_fields_set(self) -> Self:
        """Every model keeps the set of the field names it was given: about 700 bytes for
        five names, more than the rest of a Modbus point. The models are frozen, so equal
        sets are shared, as soon as each model is made (25,000 points keep a few dozen sets
        and no garbage). pydantic copies the set before changing it (``model_copy``)."""
        key = frozenset(self.__pydantic_fields_set__)
        shared = _FIELDS_SETS.get(key)
        if shared is None:
            if len(_FIELDS_SETS) >= 4096:
                return self
            shared = _FIELDS_SETS[key] = set(key)
        object.__setattr__(self, "__pydantic_fields_set__", shared)
        return self


DeviceId = Annotated[
    str,
    Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"),
]
PositiveSeconds = Annotated[float, Field(gt=0)]


class Problems:
    """What a model validator found wrong, each at the path of the offending field relative
    to the model (e.g. ``("points", 3, "name")``), raised together so the loader reports
    every one at its own line. Use in an ``after`` model validator::

        problems = Problems()
        problems.add(("points", i, "name"), f"point {name!r} is listed twice")
        problems.raise_any(self)
    """

    #: The error type of these problems; the loader recognises device-level checks by it.
    KIND = "config_check"

    def __init__(self) -> None:
        self.items: list[tuple[tuple[str | int, ...], str]] = []

    def add(self, loc: tuple[str | int, ...], message: str) -> None:
        self.items.append((loc, message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_any(self, model: object) -> None:
        if not self.items:
            return
        errors = [
            InitErrorDetails(type=PydanticCustomError(self.KIND, "{message}",
                                                      {"message": message}),
                             loc=loc, input=None)
            for loc, message in self.items
        ]
        raise ValidationError.from_exception_data(type(model).__name__, errors)


def _readable_file(value: Path, info: ValidationInfo) -> Path:
    """Checked only when the loader asks (``context={"check_files": True}``): models built in
    code and tests may name files that do not exist yet."""
    if info.context and info.context.get("check_files"):
        try:
            with open(value, "rb"):
                pass
        except OSError as err:
            raise ValueError(
                f"cannot read {str(value)!r}: {err.strerror}; fix the path or install the file"
            ) from None
    return value


#: A file the gateway reads at start (a CA bundle, a key): ``check-config`` and the loader
#: refuse a missing or unreadable one, naming it, instead of a crash at connect time.
InputFile = Annotated[Path, AfterValidator(_readable_file)]
