"""Every model format loads and gives the same logits as the module it was saved from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from auditor.errors import InputError, UsageError
from auditor.models import detect_format, open_model, sha256_file
from tests.models.files import save_export, save_onnx, save_torchscript
from tests.models.tiny import TinyCNN

ARCH = "tests.models.tiny:make"


def _logits(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module(x)


def test_registers_eight_loaders_torchscript_first(registry):
    # kserve-v2 claims http(s):// URLs only, onnxruntime only --runtime onnxruntime: neither detects a file
    assert registry.names("model_loaders") == ["torchscript", "export", "onnx", "keras", "kserve-v2", "onnxruntime",
                                               "state-dict", "pickle"]
    assert [registry.get("model_loaders", n).executes_code for n in registry.names("model_loaders")] == [
        False, False, False, False, False, False, False, True,
    ]


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ts", ".torchscript"])
def test_torchscript_detected_by_content_and_identical(registry, model, x, tmp_path, suffix):
    path = save_torchscript(model, tmp_path / f"model{suffix}")
    assert detect_format(registry, path) == "torchscript"
    loaded = open_model(registry, path)
    assert loaded.format == "torchscript" and loaded.loader == "plugins.models"
    assert not loaded.executes_code and not loaded.module.training
    torch.testing.assert_close(_logits(loaded.module, x), _logits(model, x), rtol=0, atol=0)


def test_export_pt2_identical(registry, model, x, tmp_path):
    path = save_export(model, tmp_path / "model.pt2")
    assert detect_format(registry, path) == "export"
    loaded = open_model(registry, path)
    loaded.module.eval()  # must not raise, unlike a bare exported module
    torch.testing.assert_close(_logits(loaded.module, x), _logits(model, x))


def test_export_in_training_mode_is_refused(registry, model, tmp_path):
    path = save_export(model.train(), tmp_path / "train.pt2")
    with pytest.raises(InputError, match="exported in training mode.*batch_norm.*model.eval"):
        open_model(registry, path)


def test_onnx_identical(registry, model, x, tmp_path):
    path = save_onnx(model, tmp_path / "model.onnx")
    assert detect_format(registry, path) == "onnx"
    loaded = open_model(registry, path)
    torch.testing.assert_close(_logits(loaded.module, x), _logits(model, x), rtol=1e-4, atol=1e-5)
    logits = loaded.module(x.requires_grad_(True))  # white-box: gradients reach the input
    (grad,) = torch.autograd.grad(logits.sum(), x)
    assert grad.abs().sum() > 0


def test_onnx_without_onnx2torch_says_how_to_install(registry, tmp_path, monkeypatch):
    import sys

    path = tmp_path / "model.onnx"
    path.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "onnx2torch", None)  # makes the import fail
    with pytest.raises(InputError, match=r"pip install 'medaudit\[onnx\]'"):
        open_model(registry, path)


def test_onnx_torchvision_ops_refused_clearly_when_torchvision_is_missing(registry, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from plugins.models import onnx_model

    _, _, stubbed = onnx_model._import_onnx2torch()
    if not stubbed:
        pytest.skip("a working torchvision is installed; the stand-in is not used")
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["selected"])
    graph = helper.make_graph(
        [node],
        "nms",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 4, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 4])],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])],
    )
    path = tmp_path / "nms.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(InputError, match="NonMaxSuppression.*torchvision"):
        open_model(registry, path)
    import sys

    assert not hasattr(sys.modules.get("torchvision"), "__medaudit_stub__")  # the stand-in did not leak


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model_state_dict", "model"])
def test_state_dict_and_checkpoints_with_arch(registry, model, x, tmp_path, wrap):
    state = model.state_dict()
    payload = state if wrap == "bare" else {wrap: state, "epoch": 3, "best_acc": 0.9}
    path = tmp_path / "weights.pth"
    torch.save(payload, path)
    assert detect_format(registry, path) == "state-dict"
    loaded = open_model(registry, path, arch=ARCH)
    assert loaded.format == "state-dict" and not loaded.executes_code
    torch.testing.assert_close(_logits(loaded.module, x), _logits(model, x), rtol=0, atol=0)


def test_state_dict_from_data_parallel_is_unprefixed(registry, model, x, tmp_path):
    path = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    loaded = open_model(registry, path, arch=ARCH)
    torch.testing.assert_close(_logits(loaded.module, x), _logits(model, x), rtol=0, atol=0)


def test_state_dict_without_arch_asks_for_it(registry, model, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(InputError, match=r"weights\.pt is a state dict.*needs --arch module:callable") as info:
        open_model(registry, path)
    assert "\n" not in str(info.value)


def test_state_dict_key_mismatch_lists_keys(registry, model, tmp_path):
    state = model.state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["head.bias"]
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    with pytest.raises(InputError, match=r"missing 1 key\(s\): head\.bias; unexpected 1 key\(s\): extra\.weight"):
        open_model(registry, path, arch=ARCH)


def test_state_dict_shape_mismatch(registry, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(TinyCNN(num_classes=7).state_dict(), path)
    with pytest.raises(InputError, match="size mismatch for head"):
        open_model(registry, path, arch=ARCH)


@pytest.mark.parametrize("arch", ["nocolon", "tests.models.no_such_module:make", "tests.models.tiny:missing"])
def test_bad_arch_is_a_usage_error(registry, model, tmp_path, arch):
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(UsageError, match="--arch"):
        open_model(registry, path, arch=arch)


def test_pickled_module_refused_without_trust(registry, model, tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    assert detect_format(registry, path) == "pickle"
    with pytest.raises(InputError) as info:
        open_model(registry, path)
    message = str(info.value)
    assert "whole.pt is a pickled module" in message
    assert "tests.models.tiny.TinyCNN" in message
    assert "Re-run with --trust-model only if you trust its author." in message
    assert "\n" not in message


def test_pickled_module_loaded_with_trust(registry, model, x, tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    loaded = open_model(registry, path, trust_model=True)
    assert loaded.format == "pickle" and loaded.executes_code
    torch.testing.assert_close(_logits(loaded.module, x), _logits(model, x), rtol=0, atol=0)


def test_format_flag_overrides_detection(registry, model, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(InputError, match="cannot load .*weights.pt as TorchScript"):
        open_model(registry, path, format="torchscript")
    with pytest.raises(UsageError, match="unknown model format 'savedmodel'.*torchscript"):
        open_model(registry, path, format="savedmodel")


def test_missing_and_unknown_files(registry, tmp_path):
    with pytest.raises(InputError, match="model file not found: .*nope.pt"):
        detect_format(registry, tmp_path / "nope.pt")
    odd = tmp_path / "model.h5"
    odd.write_bytes(b"\x89HDF\r\n")
    with pytest.raises(InputError, match=r"cannot tell the model format of .*model\.h5; pass --format \(known: torchscript, export, onnx, keras, kserve-v2, onnxruntime, state-dict, pickle\)"):
        detect_format(registry, odd)
    garbage = tmp_path / "model.pt"
    garbage.write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot tell the model format"):
        detect_format(registry, garbage)


def test_legacy_torch_save_format(registry, model, x, tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
    assert detect_format(registry, path) == "state-dict"
    loaded = open_model(registry, path, arch=ARCH)
    torch.testing.assert_close(_logits(loaded.module, x), _logits(model, x), rtol=0, atol=0)


def test_loaded_model_is_frozen_eval_and_fingerprinted(registry, model, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    loaded = open_model(registry, path, arch=ARCH, mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2])
    assert not loaded.module.training
    assert all(not p.requires_grad for p in loaded.module.parameters())
    assert loaded.sha256 == sha256_file(path) and len(loaded.sha256) == 64
    assert loaded.mean == (0.5, 0.4, 0.3) and loaded.std == (0.2, 0.2, 0.2)
    assert loaded.path == Path(path)


def test_sha256_streams_known_digest(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc" * (1 << 19))  # more than one chunk
    import hashlib

    assert sha256_file(path) == hashlib.sha256(b"abc" * (1 << 19)).hexdigest()


def test_plain_pickle_module_needs_trust(registry, model, x, tmp_path):
    import pickle

    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    with pytest.raises(InputError, match=r"model\.pkl is a pickled module \(it needs tests\.models\.tiny\.TinyCNN\)"):
        open_model(registry, path)
    loaded = open_model(registry, path, trust_model=True)
    torch.testing.assert_close(_logits(loaded.module, x), _logits(model, x), rtol=0, atol=0)


@pytest.mark.parametrize("content", [b"\x81", b"\x80\x02}q\x00(X\x01", bytes(range(256))],
                         ids=["newobj-on-empty-stack", "truncated-pickle", "byte-ramp"])
def test_corrupt_torch_file_is_a_bad_input_not_a_crash(registry, tmp_path, content):
    """torch's weights-only unpickler meets corrupt bytes with IndexError, KeyError and the
    like (found by fuzzing 256 random bytes: b'\\x81' alone raises IndexError)."""
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(InputError, match="cannot tell the model format"):
        detect_format(registry, path)
    with pytest.raises(InputError, match="cannot read .* as a PyTorch file|cannot read"):
        open_model(registry, path, format="state-dict")
