"""``reload`` re-imports plugin code: edit a plugin, reload, and the new code handles the
next event; a broken edit is refused and the running code goes on."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.channels.base import channel_types
from gateway.model import Event
from tests.hooks.support import component, config, plugin, wait_for
from tests.support.app import running_app
from tests.support.wait import stays

CODE = '''
from gateway.channels.base import Channel
from hooks.base import CustomerHooks

VERSION = "{version}"


class ReloadChannel(Channel):
    """A channel type: process-wide, kept as first registered until a restart."""

    channel_type = "acme-reload-test"

    def build_request(self, message, now_ms):
        raise AssertionError("not used")


class Versioned(CustomerHooks):
    def __init__(self):
        self.seen = []

    async def on_work_order_created(self, order, db):
        self.seen.append((VERSION, order.order_id))

    def register_channels(self):
        return [ReloadChannel]


hooks = Versioned()
'''


def _order(n: int) -> Event:
    return Event("work_order_created", {"order_id": f"wo-{n}", "title": "t"}, id=f"rl-{n}")


async def _reload(app: Any) -> None:
    old = component(app)
    reply = await app.commands.execute("reload", {})
    assert reply["ok"], reply
    await wait_for(lambda: app.ready.is_set() and old not in app.components
                   and any(c.name == "plugins" for c in app.components), timeout=10)


async def test_reload_runs_the_edited_plugin_code(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(tmp_path, CODE.format(version="one"))
    init = Path(cfg["plugins"]["customer_dir"]) / "acme" / "__init__.py"
    async with running_app(cfg, tmp_path) as app:
        first = plugin(app)
        await app.store.add_events([_order(1)])
        await wait_for(lambda: first.seen == [("one", "wo-1")])
        module = sys.modules[type(first).__module__]

        init.write_text(CODE.format(version="version two"))
        await _reload(app)
        second = plugin(app)
        assert type(second).__module__ == module.__name__
        assert sys.modules[module.__name__] is not module  # a new module object
        await app.store.add_events([_order(2)])
        await wait_for(lambda: second.seen == [("version two", "wo-2")])
        assert first.seen == [("one", "wo-1")]  # the old plugin is not called any more
        # The channel type it registers stays the first one (until a restart), said so.
        assert channel_types()["acme-reload-test"].__module__ == module.__name__
        assert "channel type acme-reload-test comes from plugin code that changed" in (
            caplog.text)

        # Reloading with unchanged code does not import it again.
        await _reload(app)
        assert type(plugin(app)).__module__ == module.__name__
        assert sys.modules[module.__name__] is sys.modules[type(second).__module__]

        # A broken edit: the reload is refused, naming the plugin; the running code goes on.
        current = plugin(app)
        init.write_text("def broken(:\n")
        reply = await app.commands.execute("reload", {})
        assert not reply["ok"]
        assert reply["error"]["code"] == "bad_config"
        assert "plugin 'acme'" in reply["error"]["message"]
        assert "SyntaxError" in reply["error"]["message"]
        await stays(lambda: plugin(app) is current, 0.1, what="the old plugin kept")
        await app.store.add_events([_order(3)])
        await wait_for(lambda: ("version two", "wo-3") in current.seen)
