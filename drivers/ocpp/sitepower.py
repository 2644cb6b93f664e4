"""How the site power limit is shared between the open charging sessions.

A pure function, so the rule is readable and testable apart from the websocket traffic that
carries it (``Hub.rebalance`` sends what it returns):

- without a site limit nobody is limited;
- a charger that dropped off with its session open keeps charging at what it holds (the last
  share it was sent; an equal share when that is unknown, e.g. after a gateway restart): that
  power is reserved, because an offline charger cannot be told to lower it;
- the connected ones share the rest equally, rounded down to 0.1 W so the sum never exceeds
  the limit. When it comes back, a charger is one of the connected ones again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

#: (charger, connector)
Key = tuple[str, int]


def plan_shares(
    limit_w: float | None,
    open_sessions: Sequence[Key],
    connected: set[str],
    held: Mapping[Key, float | None],
) -> dict[Key, float | None]:
    """The share (W, or None: no limit) of each connected charger's open session."""
    online = [k for k in open_sessions if k[0] in connected]
    if limit_w is None or not online:
        return {k: None for k in online}
    equal = limit_w / len(open_sessions)
    reserved = 0.0
    for key in open_sessions:
        if key[0] not in connected:
            last = held.get(key)
            reserved += last if last is not None else equal
    each = max(0.0, (limit_w - reserved) / len(online))
    return {k: math.floor(each * 10) / 10 for k in online}


def lowering_first(plan: Mapping[Key, float | None],
                   held: Mapping[Key, float | None]) -> list[Key]:
    """Send order: the sessions whose share goes down first, so that while the profiles go
    out one by one the total never rises above the limit."""
    def goes_up(key: Key) -> bool:
        new, old = plan[key], held.get(key)
        return new is None or (old is not None and new > old)
    return sorted(plan, key=goes_up)
