"""Hook specifications: the whole boundary between medaudit and its plugins.

Every hook is a *registry* hook: it receives a ``register`` callback and calls it once
per component it contributes. The core owns the registries, knows which plugin supplied
which component and rejects duplicate names (see :mod:`auditor.registry`).

A plugin is any module or object with ``@hookimpl``-decorated functions. Built-ins in
``plugins/`` are registered exactly like third-party plugins, which are discovered
through the ``medaudit`` entry-point group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    from auditor.interfaces import (
        Attack,
        Corruption,
        DataSource,
        Defense,
        Metric,
        ModelLoader,
        Modality,
        Reporter,
    )

PROJECT = "medaudit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def medaudit_register_model_loaders(register: Callable[["ModelLoader"], None]) -> None:
    """Called once at start-up. Call ``register(loader)`` for each model format
    (:class:`auditor.interfaces.ModelLoader`) the plugin can load. Returns nothing."""


@hookspec
def medaudit_register_data_sources(register: Callable[["DataSource"], None]) -> None:
    """Called once at start-up. Call ``register(source)`` for each data layout
    (:class:`auditor.interfaces.DataSource`) the plugin can read. Returns nothing."""


@hookspec
def medaudit_register_attacks(register: Callable[["Attack"], None]) -> None:
    """Called once at start-up. Call ``register(attack)`` for each attack
    (:class:`auditor.interfaces.Attack`) the plugin provides. Returns nothing."""


@hookspec
def medaudit_register_defenses(register: Callable[["Defense"], None]) -> None:
    """Called once at start-up. Call ``register(defense)`` for each defense
    (:class:`auditor.interfaces.Defense`) the plugin provides. Returns nothing."""


@hookspec
def medaudit_register_metrics(register: Callable[["Metric"], None]) -> None:
    """Called once at start-up. Call ``register(metric)`` for each metric
    (:class:`auditor.interfaces.Metric`) the plugin provides. Returns nothing."""


@hookspec
def medaudit_register_reporters(register: Callable[["Reporter"], None]) -> None:
    """Called once at start-up. Call ``register(reporter)`` for each output format
    (:class:`auditor.interfaces.Reporter`) the plugin renders. Returns nothing."""


@hookspec
def medaudit_register_modalities(register: Callable[["Modality"], None]) -> None:
    """Called once at start-up. Call ``register(modality)`` for each imaging modality
    preset (:class:`auditor.interfaces.Modality`) the plugin provides. Returns nothing."""


@hookspec
def medaudit_register_corruptions(register: Callable[["Corruption"], None]) -> None:
    """Called once at start-up. Call ``register(corruption)`` for each natural or
    acquisition corruption family (:class:`auditor.interfaces.Corruption`) the plugin
    provides. Returns nothing."""


REGISTRY_HOOKS: dict[str, str] = {
    "model_loaders": "medaudit_register_model_loaders",
    "data_sources": "medaudit_register_data_sources",
    "attacks": "medaudit_register_attacks",
    "defenses": "medaudit_register_defenses",
    "metrics": "medaudit_register_metrics",
    "reporters": "medaudit_register_reporters",
    "modalities": "medaudit_register_modalities",
    "corruptions": "medaudit_register_corruptions",
}
