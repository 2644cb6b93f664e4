"""A PollBatch is marked ``floats`` (every value a finite float: the history then skips its
own checks) only when the decoder knows it: integer registers, every one scaled alike to a
float. Float registers (an infinity is possible) and unscaled integers are not marked."""

from __future__ import annotations

import math
from typing import Any

import pytest

from gateway.model import PollBatch
from tests.drivers.modbus.support import device, running, serving

SCALED = [{"name": f"v{i}", "function": "input", "address": i, "type": "uint16",
           "scale": 0.1} for i in range(3)]
FLOATS = [{"name": f"f{i}", "function": "input", "address": 2 * i, "type": "float32"}
          for i in range(2)]
INTS = [{"name": f"n{i}", "function": "input", "address": i, "type": "int16"}
        for i in range(2)]


@pytest.mark.parametrize(("points", "marked"), [(SCALED, True), (FLOATS, False),
                                                (INTS, False)])
async def test_only_integer_registers_scaled_to_floats_are_marked(
        points: list[dict[str, Any]], marked: bool) -> None:
    cfg = device(points=points)
    async with serving(cfg) as (_sim, [cfg]), running([cfg]) as (_drv, ctx):
        await ctx.wait_for(lambda c: len(c.batches) >= 2, 5)
        batch = ctx.batches[1]
        assert type(batch) is PollBatch
        assert batch.floats is marked
        if marked:  # what the mark vouches for
            assert all(type(v) is float and math.isfinite(v) for v in batch.values)
