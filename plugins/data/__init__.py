"""Built-in data sources: class folders, CSV manifests, MedMNIST .npz, image+mask folders.

Registered through the same hook as third-party sources; :func:`auditor.datasets.open_dataset`
picks one by ``detect()`` or by ``--data-format``.
"""

from typing import Callable

from auditor.hookspecs import hookimpl
from auditor.interfaces import DataSource


@hookimpl
def medaudit_register_data_sources(register: Callable[[DataSource], None]) -> None:
    from plugins.data.csv_manifest import CsvSource
    from plugins.data.folder import FolderSource
    from plugins.data.npz import NpzSource
    from plugins.data.seg_folders import SegFoldersSource

    for source in (FolderSource(), CsvSource(), NpzSource(), SegFoldersSource()):
        register(source)
