"""The errors of plugin loading, apart from the plugin manager: the component and the loader
raise them on every site, and a site without plugins never imports pluggy
(:mod:`hooks.manager`)."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.errors import StartupError


class PluginLoadError(StartupError):
    """A plugin could not be loaded or validated. ``plugin`` names it. A StartupError: with
    ``plugins.on_error: refuse`` the CLI prints it (no traceback) and exits 78."""

    def __init__(self, plugin: str, message: str) -> None:
        super().__init__(f"plugin {plugin!r}: {message}",
                         hint="fix or remove the plugin, or set plugins.on_error: skip to "
                         "start without it")
        self.plugin = plugin
        self.message = message


class PluginLoadErrors(PluginLoadError):
    """Several plugins could not be loaded: every one is listed, not only the first."""

    def __init__(self, errors: Sequence[PluginLoadError]) -> None:
        StartupError.__init__(
            self, f"{len(errors)} plugins failed to load:\n" + "\n".join(
                f"  - {err}" for err in errors),
            hint="fix or remove these plugins, or set plugins.on_error: skip to start "
            "without them")
        self.errors = list(errors)
        self.plugin = ", ".join(err.plugin for err in errors)
        self.message = "; ".join(f"{err.plugin}: {err.message}" for err in errors)
