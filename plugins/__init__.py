"""Built-in medaudit plugins.

Each entry is an ordinary pluggy plugin module, registered through the same path as
third-party plugins (see :mod:`auditor.registry`).
"""

BUILTIN_PLUGINS: tuple[str, ...] = (
    "plugins.modalities",
    "plugins.models",
    "plugins.data",
    "plugins.attacks",
    "plugins.defenses",
    "plugins.metrics",
    "plugins.reporters",
    "plugins.corruptions",
)
