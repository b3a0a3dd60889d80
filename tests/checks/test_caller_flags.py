"""An audit run from Python gives its caller's GPU arithmetic flags back
(auditor.numerics.caller_gpu_arithmetic around run_audit)."""

from __future__ import annotations

import torch


def test_an_audit_from_python_gives_the_callers_flags_back(check_workdir, monkeypatch, tmp_path) -> None:
    """run_audit sets exact arithmetic (here forced on the CPU by standing in for the GPU
    branch) and restores what the caller had, even though the audit ran with it."""
    import warnings

    import auditor.engine.prepare as prepare_module
    from auditor.audit import run_audit
    from auditor.registry import get_registry
    from tests.checks.conftest import audit_config, one_thread

    seen = {}

    def as_on_a_gpu(device: torch.device) -> dict:
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic = False, True
        seen["during"] = (torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic)
        return {}

    monkeypatch.setattr(prepare_module, "exact_gpu_arithmetic", as_on_a_gpu)
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic)
    assert before == (True, False), "the caller starts from PyTorch's defaults"
    config = audit_config(check_workdir, "honest", tmp_path / "out", attacks=["fgsm"], eps_255=[8.0], checks=False)
    with warnings.catch_warnings(), one_thread():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        run_audit(config, get_registry())
    assert seen["during"] == (False, True)
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic) == before
