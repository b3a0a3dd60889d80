"""The real third-party orobix retina U-Net (TorchScript port) in ../shared/data."""

from __future__ import annotations

import pytest

from auditor.models import detect_format, infer_input_channels, open_model, probe_model
from tests.models.conftest import SHARED_DATA

RETINA = SHARED_DATA / "models" / "retina_unet_orobix" / "retina_unet.torchscript.pt"


@pytest.mark.realdata
@pytest.mark.skipif(not RETINA.is_file(), reason=f"real data not found at {RETINA}")
def test_retina_unet_is_binary_segmentation_with_logits(registry):
    assert detect_format(registry, RETINA) == "torchscript"
    loaded = open_model(registry, RETINA)
    assert loaded.format == "torchscript" and not loaded.executes_code
    assert infer_input_channels(loaded.module) == 1
    probe = probe_model(loaded.module, (1, 64, 64), "cpu")
    assert probe.task == "segmentation" and probe.output_shape == (4, 1, 64, 64)
    assert probe.binary and probe.num_classes == 2
    assert not probe.looks_like_probabilities and probe.finite
