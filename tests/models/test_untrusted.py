"""Loading a file medaudit does not trust must never run code from it.

Each hostile file, if unpickled with arbitrary globals, calls ``open(canary, "w")``; the
tests check the canary does not exist afterwards. ``test_the_payload_is_live`` shows the
payload really creates the file when it is unpickled carelessly.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from auditor.errors import InputError
from auditor.models import detect_format, open_model
from tests.models.files import CreatesFile, rewrite_zip, save_export, save_torchscript


@pytest.fixture
def canary(tmp_path) -> Path:
    return tmp_path / "canary-created-by-unpickling"


def _evil_torch_save(canary: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(CreatesFile(canary), buffer)
    return buffer.getvalue()


def test_the_payload_is_live(tmp_path, canary):
    path = tmp_path / "evil.pt"
    path.write_bytes(_evil_torch_save(canary))
    torch.load(path, weights_only=False)
    assert canary.exists()


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".bin"])
def test_malicious_pickle_refused_without_trust(registry, tmp_path, canary, suffix):
    path = tmp_path / f"evil{suffix}"
    path.write_bytes(_evil_torch_save(canary))
    assert detect_format(registry, path) == "pickle"
    with pytest.raises(InputError, match=r"is a pickled module \(it needs \w+\.open\).*--trust-model"):
        open_model(registry, path)
    for fmt in ("state-dict", "pickle"):
        with pytest.raises(InputError, match="--trust-model"):
            open_model(registry, path, format=fmt, arch="tests.models.tiny:make")
    assert not canary.exists()


def test_malicious_plain_pickle_refused(registry, tmp_path, canary):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(CreatesFile(canary)))
    with pytest.raises(InputError, match="--trust-model"):
        open_model(registry, path)
    assert not canary.exists()


def test_torchscript_archive_with_python_globals(registry, model, tmp_path, canary):
    good = save_torchscript(model, tmp_path / "good.pt")
    evil_pickle = pickle.dumps(CreatesFile(canary), protocol=2)
    path = rewrite_zip(good, tmp_path / "evil.pt", lambda n, d: evil_pickle if n.endswith("/data.pkl") else d)
    assert detect_format(registry, path) == "torchscript"
    with pytest.raises(InputError, match="cannot load .*evil.pt as TorchScript"):
        open_model(registry, path)
    assert not canary.exists()


def test_pt2_with_pickled_weight(registry, model, tmp_path, canary):
    """torch.export.load itself would run this (torch.load(weights_only=False))."""
    good = save_export(model, tmp_path / "good.pt2")
    payload = _evil_torch_save(canary)

    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            entry = next(iter(config["config"].values()))
            entry["use_pickle"] = True
            weight_file = entry["path_name"]
            edit.weight_file = weight_file  # type: ignore[attr-defined]
            return json.dumps(config).encode()
        return data

    staged = rewrite_zip(good, tmp_path / "staged.pt2", edit)
    target = edit.weight_file  # type: ignore[attr-defined]
    path = rewrite_zip(staged, tmp_path / "evil.pt2", lambda n, d: payload if n.endswith(f"data/weights/{target}") else d)
    with pytest.raises(InputError, match="evil.pt2 was refused"):
        open_model(registry, path)
    assert not canary.exists()


def test_pt2_with_opaque_constant(registry, model, tmp_path, canary):
    """torch.export.load itself would run this (pickle.loads on opaque constants)."""
    good = save_export(model, tmp_path / "good.pt2")
    root = zipfile.ZipFile(good).namelist()[0].split("/")[0]

    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("model_constants_config.json"):
            config = json.loads(data)
            config["config"]["evil"] = {
                "path_name": "opaque_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None,
            }
            return json.dumps(config).encode()
        return data

    extra = {f"{root}/data/constants/opaque_obj_0": pickle.dumps(CreatesFile(canary))}
    path = rewrite_zip(good, tmp_path / "evil.pt2", edit, extra)
    with pytest.raises(InputError, match=r"evil.pt2 was refused: it holds a pickled Python object \(\w+\.open\)"):
        open_model(registry, path)
    assert not canary.exists()


def test_pt2_with_aotinductor_library_refused(registry, model, tmp_path):
    good = save_export(model, tmp_path / "good.pt2")
    root = zipfile.ZipFile(good).namelist()[0].split("/")[0]
    extra = {f"{root}/data/aotinductor/model/model.so": b"\x7fELF not really"}
    path = rewrite_zip(good, tmp_path / "aoti.pt2", lambda n, d: d, extra)
    with pytest.raises(InputError, match="AOTInductor"):
        open_model(registry, path)


def test_export_guard_leaves_torch_as_it_was(registry, model, tmp_path):
    import os

    from torch.export.pt2_archive import _package

    before = (_package.pickle, _package._load_aoti, os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD"))
    open_model(registry, save_export(model, tmp_path / "good.pt2"))
    assert (_package.pickle, _package._load_aoti, os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")) == before


def test_onnx_loader_never_unpickles(registry, tmp_path, canary):
    pytest.importorskip("onnx")
    path = tmp_path / "evil.onnx"
    path.write_bytes(_evil_torch_save(canary))
    with pytest.raises(InputError, match="evil.onnx"):
        open_model(registry, path)
    assert not canary.exists()
