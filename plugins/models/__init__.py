"""Built-in model loaders: one module per file format.

Registration order is the detection order: TorchScript first, because ``.pt``/``.pth``
are shared with ``torch.save`` files, which the state-dict and pickle loaders claim.
"""

from __future__ import annotations

from typing import Callable

from auditor.hookspecs import hookimpl
from auditor.interfaces import ModelLoader
from plugins.models.exported import ExportLoader
from plugins.models.keras_model import KerasLoader
from plugins.models.kserve_v2 import KServeV2Loader
from plugins.models.onnx_model import OnnxLoader
from plugins.models.onnx_runtime import OnnxRuntimeLoader
from plugins.models.pickled import PickleLoader
from plugins.models.state_dict import StateDictLoader
from plugins.models.torchscript import TorchScriptLoader

LOADERS: tuple[type[ModelLoader], ...] = (
    TorchScriptLoader,
    ExportLoader,
    OnnxLoader,
    KerasLoader,
    KServeV2Loader,  # http(s):// URLs only
    OnnxRuntimeLoader,  # --runtime onnxruntime only
    StateDictLoader,
    PickleLoader,
)


@hookimpl
def medaudit_register_model_loaders(register: Callable[[ModelLoader], None]) -> None:
    for loader in LOADERS:
        register(loader())
