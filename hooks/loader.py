"""Where plugins come from, in load order:

1. ``DEFAULT_PLUGINS``: plugins that ship with fieldgate, loaded like anyone else's
   (Datasette's DEFAULT_PLUGINS). None today: the built-in channels register themselves
   (gateway/channels/builtin.py), as the built-in drivers do.
2. Installed packages exposing the entry point group ``fieldgate.plugins``.
3. ``plugins.modules``: importable module paths.
4. The customer folder: ``plugins.customer: acme`` loads ``<customer_dir>/acme/hooks/`` (the
   original platform's layout, ``customers/<name>/hooks/__init__.py``) or
   ``<customer_dir>/acme/__init__.py``, whose ``hooks`` is a ``CustomerHooks`` instance (or
   subclass), or any object with ``@hookimpl`` methods. Without ``customer_dir`` the folder
   is looked for in ``/etc/fieldgate/customers``, then ``<state_dir>/customers``, then among
   the examples shipped with fieldgate; never expect your own code inside the installed
   package (an upgrade replaces it).

A customer folder is imported again when its code changed (its ``.py`` files' size and
modification time), so a ``reload`` runs the new code: new module objects, the old plugin
unregistered with the old component. Unchanged code is not imported twice.

A plugin that fails to import or validate is reported by name; ``plugins.on_error`` decides
whether the gateway refuses to start (``refuse``) or goes on without it (``skip``).

:func:`plugin_sources` only lists what is configured or installed (it imports nothing), so a
site with no plugins never needs the plugin manager, nor pluggy.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hooks.errors import PluginLoadError, PluginLoadErrors

if TYPE_CHECKING:
    from hooks.manager import FieldgatePluginManager

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "fieldgate.plugins"
DEFAULT_PLUGINS: tuple[str, ...] = ()
#: Where customer folders are looked for when ``plugins.customer_dir`` is not set, before
#: ``<state_dir>/customers`` and the bundled examples.
ETC_CUSTOMER_DIR = Path("/etc/fieldgate/customers")
#: fieldgate's own example folders (``plugins.customer: example``), found last.
BUNDLED_CUSTOMER_DIR = Path(__file__).parent / "customers"
#: module name -> fingerprint of the code it was imported from.
_IMPORTED: dict[str, tuple[tuple[str, int, int], ...]] = {}


@dataclass
class LoadReport:
    loaded: dict[str, str] = field(default_factory=dict)  # name -> source
    failed: dict[str, str] = field(default_factory=dict)  # name -> error
    _refused: list[PluginLoadError] = field(default_factory=list, repr=False)

    def fail(self, err: PluginLoadError, on_error: str) -> None:
        """Record a plugin that failed. With ``skip`` it is logged and left out; with
        ``refuse`` it is kept for :meth:`check`, so that every broken plugin is reported at
        once, not the first one."""
        self.failed[err.plugin] = err.message
        if on_error == "refuse":
            self._refused.append(err)
            return
        log.error("plugin %s failed to load and is skipped (plugins.on_error: skip): %s",
                  err.plugin, err.message)

    def check(self) -> None:
        """Raise the refused failures, all of them in one error (the CLI prints it and exits
        78). Not logged here: the error is reported once, by whoever stops the start."""
        refused, self._refused = self._refused, []
        if len(refused) == 1:
            raise refused[0]
        if refused:
            raise PluginLoadErrors(refused)


def _import_module(dotted: str, name: str) -> Any:
    try:
        return importlib.import_module(dotted)
    except Exception as err:
        raise PluginLoadError(name, f"import of {dotted} failed: "
                              f"{type(err).__name__}: {err}") from err


def customer_dirs(directory: Path | None, state_dir: Path | None) -> list[Path]:
    """Where ``plugins.customer`` is looked for, in order."""
    if directory is not None:
        return [directory]
    dirs = [ETC_CUSTOMER_DIR]
    if state_dir is not None:
        dirs.append(state_dir / "customers")
    dirs.append(BUNDLED_CUSTOMER_DIR)
    return dirs


def find_customer(customer: str, dirs: list[Path]) -> Path | None:
    """The ``__init__.py`` of the customer's plugin: ``<dir>/<customer>/hooks/__init__.py``
    (the original layout) before ``<dir>/<customer>/__init__.py``, in the first dir that has
    one."""
    for base in dirs:
        for init in (base / customer / "hooks" / "__init__.py", base / customer / "__init__.py"):
            if init.is_file():
                return init
    return None


def _fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    out = []
    for path in sorted(folder.rglob("*.py")):
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(out)


def load_customer(customer: str, directory: Path | None, state_dir: Path | None = None) -> Any:
    """Import the customer's plugin folder (see :func:`find_customer`) and return what it
    exports as ``hooks`` (else the module). Imported again only when its code changed."""
    dirs = customer_dirs(directory, state_dir)
    init = find_customer(customer, dirs)
    if init is None:
        looked = ", ".join(str(d / customer) for d in dirs)
        first = dirs[0] / customer / "hooks" / "__init__.py"
        raise PluginLoadError(customer, f"no plugin folder found (looked in {looked}); "
                              f"create {first} exporting `hooks`, or fix plugins.customer / "
                              "plugins.customer_dir")
    if init.parent.parent == BUNDLED_CUSTOMER_DIR:
        module = _import_module(f"hooks.customers.{customer}", customer)
        return getattr(module, "hooks", module)
    folder = init.parent
    digest = hashlib.sha1(str(init.resolve()).encode()).hexdigest()[:10]
    mod_name = f"fieldgate_customer_{customer}_{digest}"
    fingerprint = _fingerprint(folder)
    if mod_name in sys.modules and _IMPORTED.get(mod_name) == fingerprint:
        return getattr(sys.modules[mod_name], "hooks", sys.modules[mod_name])
    if mod_name in sys.modules:
        log.info("plugin %s: its code in %s changed; importing it again", customer, folder)
        for name in [m for m in sys.modules if m == mod_name or m.startswith(mod_name + ".")]:
            del sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        mod_name, init, submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:
        raise PluginLoadError(customer, f"cannot import {init}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        sys.modules.pop(mod_name, None)
        _IMPORTED.pop(mod_name, None)
        raise PluginLoadError(customer, f"import of {init} failed: "
                              f"{type(err).__name__}: {err}") from err
    _IMPORTED[mod_name] = fingerprint
    return getattr(module, "hooks", module)


def _entry_points(disabled: set[str]) -> Iterator[tuple[str, Callable[[], Any]]]:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in disabled:
            log.info("plugin %s (entry point %s) is disabled by plugins.disable", ep.name, ep.value)
            continue

        def load(ep: importlib.metadata.EntryPoint = ep) -> Any:
            try:
                return ep.load()
            except Exception as err:
                raise PluginLoadError(ep.name, f"entry point {ep.value} failed to load: "
                                      f"{type(err).__name__}: {err}") from err

        yield ep.name, load


#: One plugin to load: (name, source, loader). The loader imports it.
Source = tuple[str, str, Callable[[], Any]]


def plugin_sources(
    *,
    customer: str | None = None,
    customer_dir: Path | None = None,
    state_dir: Path | None = None,
    modules: tuple[str, ...] = (),
    entry_points: bool = True,
    disable: tuple[str, ...] = (),
    extra: tuple[tuple[str, Any], ...] = (),
) -> list[Source]:
    """The plugins to load, in load order (see the module docstring), without importing any
    of them: the installed entry points are read from the packages' metadata. Empty: the
    site has no plugins."""
    disabled = set(disable)
    sources: list[Source] = []
    for dotted in DEFAULT_PLUGINS:
        sources.append((dotted, "builtin", functools.partial(_import_module, dotted, dotted)))
    if entry_points:
        for name, load in _entry_points(disabled):
            sources.append((name, "entry point", load))
    for dotted in modules:
        if dotted not in disabled:
            sources.append((dotted, "module", functools.partial(_import_module, dotted, dotted)))
    if customer and customer not in disabled:
        sources.append((customer, "customer folder",
                        functools.partial(load_customer, customer, customer_dir, state_dir)))
    for name, obj in extra:
        sources.append((name, "object", functools.partial(lambda o: o, obj)))
    return sources


def load_sources(pm: FieldgatePluginManager, sources: list[Source],
                 on_error: str = "refuse") -> LoadReport:
    """Import and register each of ``sources`` (from :func:`plugin_sources`); failures are
    in the report (see :func:`load_plugins`)."""
    report = LoadReport()
    for name, source, load in sources:
        try:
            pm.register_checked(load(), name)
        except PluginLoadError as err:
            if source == "builtin":
                raise  # a bug in fieldgate itself, not a plugin to skip
            report.fail(err, on_error)  # with refuse: raised by report.check(), with the rest
            continue
        report.loaded[name] = source
        log.info("plugin %s loaded (%s)", name, source)
    return report


def load_plugins(
    pm: FieldgatePluginManager,
    *,
    customer: str | None = None,
    customer_dir: Path | None = None,
    state_dir: Path | None = None,
    modules: tuple[str, ...] = (),
    entry_points: bool = True,
    disable: tuple[str, ...] = (),
    on_error: str = "refuse",
    extra: tuple[tuple[str, Any], ...] = (),
) -> LoadReport:
    """Load and register every configured plugin; see the module docstring. Failures are in
    the report; call ``report.check()`` once the plugins' registrations ran too, so that
    ``on_error: refuse`` reports every broken plugin at once."""
    sources = plugin_sources(customer=customer, customer_dir=customer_dir, state_dir=state_dir,
                             modules=modules, entry_points=entry_points, disable=disable,
                             extra=extra)
    return load_sources(pm, sources, on_error)
