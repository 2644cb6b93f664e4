"""How a register's raw number becomes the point's value: ``raw * scale + offset``, at the
precision the scale implies.

An integer register scaled by 0.1 holds tenths: 2301 means 230.1, not the float product
``2301 * 0.1 = 230.10000000000002``. So an integer register's value is computed exactly in
decimal: with ``d`` the decimals of ``scale`` and ``offset`` as written (0.1 -> 1, 0.001 -> 3,
0.25 -> 2, 2 -> 0), the value is ``(raw * scale·10^d + offset·10^d) / 10^d`` in integer
arithmetic with one correctly rounded division at the end: the float nearest to the exact
decimal, which prints as that decimal. With ``d == 0`` (integer scale and offset) the value
is an int. A float register (float32, float64) is scaled in floating point as before: its
own fraction carries its precision, and rounding it to the scale's decimals would lose it.

A point's ``decimals`` overrides this: its value is rounded to that many decimals (ties to
the even digit; 0 gives an int), for an integer or a float register.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from drivers.modbus import datatypes as dt
from gateway.model import Value

#: The linear form of a scaling, for the block decoder: ``(mult, add, div)`` means
#: ``(raw * mult + add) / div``, or ``raw * mult + add`` when ``div`` is None.
Linear = tuple[int | float, int | float, int | None]


def implied_decimals(scale: float, offset: float) -> int:
    """The decimals of ``scale`` and ``offset`` as written (their shortest repr)."""
    return max(_decimals(scale), _decimals(offset))


def _decimals(x: float) -> int:
    exponent = Decimal(repr(float(x))).normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # a finite float (the config refuses nan/inf)
    return max(0, -exponent)


def _integral(type_name: str) -> bool:
    return DATA_INTEGRAL.get(type_name, False)


DATA_INTEGRAL = {name: spec.numeric and spec.struct_code not in ("f", "d")
                 for name, spec in dt.DATA_TYPES.items()}
"""Type name -> whether its raw value is an integer (the exact decimal path applies)."""


class Scaling:
    """The value of one point from its raw number: ``apply(raw)``. ``linear`` is its form for
    the block decoder, or None when ``apply`` must be called (an explicit rounding)."""

    __slots__ = ("apply", "linear")

    def __init__(self, type_name: str, scale: float, offset: float,
                 decimals: int | None = None) -> None:
        self.linear: Linear | None = None
        self.apply: Callable[[dt.Decoded], Value]
        if _integral(type_name):
            d = implied_decimals(scale, offset)
            div = 10 ** d
            mult = int(Decimal(repr(float(scale))) * div)
            add = int(Decimal(repr(float(offset))) * div)
            if decimals is None or decimals >= d:
                self.linear = (mult, add, div if d else None)
                self.apply = _exact(mult, add, div if d else None)
            else:
                self.apply = _exact_rounded(mult, add, 10 ** (d - decimals), decimals)
        else:
            scale, offset = float(scale), float(offset)
            if decimals is None:
                self.linear = (scale, offset, None)
                self.apply = _floating(scale, offset)
            else:
                self.apply = _floating_rounded(scale, offset, decimals)


def _exact(mult: int, add: int, div: int | None) -> Callable[[dt.Decoded], Value]:
    if div is None:
        return lambda raw: int(raw) * mult + add
    return lambda raw: (int(raw) * mult + add) / div


def _exact_rounded(mult: int, add: int, step: int, decimals: int) -> Callable[[dt.Decoded], Value]:
    """``(raw * mult + add)`` counts units of 10^-d; round it to units of 10^-decimals
    (``step`` = 10^(d - decimals)) in integers, ties to even."""
    div = 10 ** decimals

    def value(raw: dt.Decoded) -> Value:
        q, r = divmod(int(raw) * mult + add, step)
        if 2 * r > step or (2 * r == step and q % 2):
            q += 1
        return q / div if decimals else q

    return value


def _floating(scale: float, offset: float) -> Callable[[dt.Decoded], Value]:
    return lambda raw: float(raw) * scale + offset


def _floating_rounded(scale: float, offset: float,
                      decimals: int) -> Callable[[dt.Decoded], Value]:
    def value(raw: dt.Decoded) -> Value:
        x = float(raw) * scale + offset
        if x != x or x in (float("inf"), float("-inf")):
            return x  # NaN: the device's "not available" (a bad sample); inf as it is
        return round(x, decimals) if decimals else round(x)

    return value


def scaling(type_name: str, scale: float, offset: float,
            decimals: int | None) -> Scaling | None:
    """The point's scaling, or None when its raw value is its value (no scale, offset or
    rounding)."""
    if scale == 1.0 and offset == 0.0 and decimals is None:
        return None
    return Scaling(type_name, scale, offset, decimals)
