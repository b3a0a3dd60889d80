"""The arithmetic an audit runs in on a GPU (auditor.numerics.exact_gpu_arithmetic).

On an H200, TF32 convolutions moved a PGD confidence in its fifth digit between batch sizes
7 and 32 (tests/distributed/test_local_identity.py failed there); with float32 and
deterministic cuDNN the identity and OOM-split tests passed on that GPU."""

from __future__ import annotations

import pytest
import torch

from auditor.engine.record import environment
from auditor.numerics import exact_gpu_arithmetic


def test_the_cpu_is_left_as_it_is() -> None:
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    assert exact_gpu_arithmetic(torch.device("cpu")) is None
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark) == before
    assert "gpu_arithmetic" not in environment(torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU available here")
def test_a_gpu_audit_runs_in_float32_with_deterministic_kernels() -> None:
    facts = exact_gpu_arithmetic(torch.device("cuda"))
    assert facts == {"tf32": False, "cudnn_deterministic": True, "cudnn_benchmark": False}
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert environment(torch.device("cuda"))["gpu_arithmetic"] == facts
