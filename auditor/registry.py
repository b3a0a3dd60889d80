"""Plugin loading and the component registries.

Built-in plugins (``plugins.BUILTIN_PLUGINS``) and third-party plugins (entry-point group
``medaudit``) go through the same path: each is registered with one pluggy manager, then
each registry hook is called with a ``register`` callback that records which plugin
supplied which component. Two components with one name are an error naming both plugins.

``MEDAUDIT_PLUGINS`` (comma-separated entry-point names) restricts which third-party
plugins load; set it to an empty string to load none. Built-ins always load.

Provenance: every component the registry hands out through :meth:`Registry.get` (or that a
caller reports with :meth:`Registry.note`) is remembered, so an audit can say which plugin,
from which distribution at which version, produced each of its numbers
(:meth:`Registry.provenance`). :meth:`Registry.for_audit` starts a fresh record for one audit.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from auditor import __version__, hookspecs
from auditor.errors import PluginError, UsageError

ENTRY_POINT_GROUP = "medaudit"

SINGULAR = {
    "model_loaders": "model format", "data_sources": "data format", "attacks": "attack",
    "defenses": "defense", "metrics": "metric", "reporters": "report format", "modalities": "modality",
    "corruptions": "corruption",
}
# the role of each kind of component in an audit, as results.json's provenance names it
ROLE = {
    "model_loaders": "model loader", "data_sources": "data source", "attacks": "attack", "defenses": "defense",
    "metrics": "metric", "reporters": "reporter", "modalities": "modality", "corruptions": "corruption",
}
BUILTIN_DISTRIBUTION = "medaudit"
ENV_VAR = "MEDAUDIT_PLUGINS"


@dataclass
class Registered:
    name: str
    plugin: str
    component: Any


@dataclass
class Registry:
    plugins: list[dict[str, Any]] = field(default_factory=list)
    components: dict[str, dict[str, Registered]] = field(default_factory=dict)
    used: dict[tuple[str, str], None] = field(default_factory=dict)  # (kind, name) handed out, in order

    def get(self, kind: str, name: str) -> Any:
        table = self.components[kind]
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            raise UsageError(f"unknown {SINGULAR.get(kind, kind)} '{name}' (known: {known})")
        self.used[(kind, name)] = None
        return table[name].component

    def note(self, kind: str, name: str) -> None:
        """Record a component chosen without :meth:`get` (e.g. a data source found by detection)."""
        if name in self.components.get(kind, {}):
            self.used[(kind, name)] = None

    def for_audit(self) -> "Registry":
        """The same plugins and components with an empty record of what was used: one
        audit's provenance, not every lookup this process made."""
        return Registry(plugins=self.plugins, components=self.components)

    def provenance(self, extra: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
        """One entry per component used (plus ``extra`` (kind, name) pairs known to be used
        later, such as the reporters of a run): its role, name, the plugin that registered it
        and that plugin's distribution and version (built-ins: medaudit's own)."""
        info = {p["name"]: p for p in self.plugins}
        out = []
        for kind, name in dict.fromkeys([*self.used, *(extra or [])]):
            registered = self.components.get(kind, {}).get(name)
            if registered is None:
                continue
            plugin = info.get(registered.plugin, {})
            out.append({"kind": ROLE.get(kind, kind), "name": name, "plugin": registered.plugin,
                        "distribution": plugin.get("distribution"), "version": plugin.get("version")})
        return out

    def all(self, kind: str) -> list[Any]:
        return [r.component for r in self.components[kind].values()]

    def names(self, kind: str) -> list[str]:
        return list(self.components[kind])

    def provider(self, kind: str, name: str) -> str:
        return self.components[kind][name].plugin

    @property
    def attacks(self) -> dict[str, Any]:
        return {k: r.component for k, r in self.components["attacks"].items()}

    def describe(self) -> list[dict[str, Any]]:
        """One entry per plugin with what it registered (for ``medaudit plugins``); components
        marked ``public = False`` (the engine's internal attacks) are left out."""
        out = []
        for info in self.plugins:
            registered = {
                kind: [r.name for r in table.values()
                       if r.plugin == info["name"] and getattr(r.component, "public", True)]
                for kind, table in self.components.items()
            }
            out.append({**info, "registered": {k: v for k, v in registered.items() if v}})
        return out


def _component_name(component: Any) -> str:
    name = getattr(component, "name", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"component {component!r} has no string 'name' attribute")
    return name


def _distribution_name(dist: Any) -> str | None:
    if dist is None:
        return None
    try:
        return dist.metadata["Name"] or None
    except (KeyError, AttributeError):
        return getattr(dist, "name", None)


def _selected_third_party() -> set[str] | None:
    raw = os.environ.get(ENV_VAR)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def load_registry(extra_plugins: list[Any] | None = None) -> Registry:
    """Load built-in and third-party plugins and fill every registry."""
    from plugins import BUILTIN_PLUGINS

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry(components={kind: {} for kind in hookspecs.REGISTRY_HOOKS})

    def add(plugin: Any, name: str, origin: str, distribution: str | None = None, version: str | None = None) -> None:
        try:
            pm.register(plugin, name=name)
        except ValueError as exc:
            raise PluginError(f"plugin '{name}' ({origin}) is registered twice: {exc}") from None
        registry.plugins.append({"name": name, "origin": origin, "distribution": distribution, "version": version})

    for module_name in BUILTIN_PLUGINS:
        add(importlib.import_module(module_name), module_name, "built-in", BUILTIN_DISTRIBUTION, __version__)

    selected = _selected_third_party()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if selected is not None and ep.name not in selected:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin must say who it is
            raise PluginError(f"cannot load plugin '{ep.name}' ({ep.value}): {exc}") from None
        dist = getattr(ep, "dist", None)  # None for entry points not found through a distribution
        add(plugin, ep.name, f"entry point {ep.value}", _distribution_name(dist), getattr(dist, "version", None))

    for i, plugin in enumerate(extra_plugins or []):
        add(plugin, getattr(plugin, "__name__", f"extra-{i}"), "programmatic")

    for kind, hook_name in hookspecs.REGISTRY_HOOKS.items():
        table = registry.components[kind]
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            plugin_name = impl.plugin_name

            def register(component: Any, _plugin: str = plugin_name, _table=table, _kind=kind) -> None:
                name = _component_name(component)
                if name in _table:
                    other = _table[name].plugin
                    raise PluginError(
                        f"duplicate {SINGULAR.get(_kind, _kind)} '{name}': "
                        f"registered by both '{other}' and '{_plugin}'"
                    )
                _table[name] = Registered(name, _plugin, component)

            impl.function(register=register)
    return registry


_cached: Registry | None = None


def get_registry(reload: bool = False) -> Registry:
    global _cached
    if _cached is None or reload:
        _cached = load_registry()
    return _cached
