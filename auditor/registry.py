"""Plugin loading and the component registries.

Built-in plugins (``plugins.BUILTIN_PLUGINS``) and third-party plugins (entry-point group
``medaudit``) go through the same path: each is registered with one pluggy manager, then
each registry hook is called with a ``register`` callback that records which plugin
supplied which component. Two components with one name are an error naming both plugins.

``MEDAUDIT_PLUGINS`` (comma-separated entry-point names) restricts which third-party
plugins load; set it to an empty string to load none. Built-ins always load.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from auditor import hookspecs
from auditor.errors import PluginError, UsageError

ENTRY_POINT_GROUP = "medaudit"

SINGULAR = {
    "model_loaders": "model format", "data_sources": "data format", "attacks": "attack",
    "defenses": "defense", "metrics": "metric", "reporters": "report format", "modalities": "modality",
}
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

    def get(self, kind: str, name: str) -> Any:
        table = self.components[kind]
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            raise UsageError(f"unknown {SINGULAR.get(kind, kind)} '{name}' (known: {known})")
        return table[name].component

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

    def add(plugin: Any, name: str, origin: str, version: str | None = None) -> None:
        try:
            pm.register(plugin, name=name)
        except ValueError as exc:
            raise PluginError(f"plugin '{name}' ({origin}) is registered twice: {exc}") from None
        registry.plugins.append({"name": name, "origin": origin, "version": version})

    for module_name in BUILTIN_PLUGINS:
        add(importlib.import_module(module_name), module_name, "built-in")

    selected = _selected_third_party()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if selected is not None and ep.name not in selected:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin must say who it is
            raise PluginError(f"cannot load plugin '{ep.name}' ({ep.value}): {exc}") from None
        dist = getattr(ep, "dist", None)
        add(plugin, ep.name, f"entry point {ep.value}", getattr(dist, "version", None))

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
