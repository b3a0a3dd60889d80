"""Pass counting by batch size and the pass timer behind the overhead ratio."""

from __future__ import annotations

import pytest
import torch

from auditor.accounting import CountingModel, PassCounter, PassTimer


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 2)).eval()


def test_counter_records_calls_per_batch_size():
    counter = PassCounter()
    model = CountingModel(_model(), counter)
    before = counter.sizes()
    with torch.no_grad():
        model(torch.rand(5, 3, 8, 8))
        model(torch.rand(5, 3, 8, 8))
    x = torch.rand(3, 3, 8, 8, requires_grad=True)
    model(x).sum().backward()
    assert counter.sizes_since(before) == {5: [2, 0], 3: [1, 1]}
    assert counter.forward_samples == 13 and counter.backward_samples == 3
    mark = counter.sizes()
    with torch.no_grad():
        model(torch.rand(3, 3, 8, 8))
    assert counter.sizes_since(mark) == {3: [1, 0]}


def test_pass_timer_interpolates_between_measured_sizes():
    timer = PassTimer(_model(), torch.rand(8, 3, 8, 8), repeats=1)
    f4, b4 = timer.per_call(4)
    f8, b8 = timer.per_call(8)
    f6, b6 = timer.per_call(6)
    assert set(timer._at) == {4, 8}  # 6 was not measured, only interpolated
    assert f6 == pytest.approx((f4 + f8) / 2) and b6 == pytest.approx((b4 + b8) / 2)
    timer.per_call(20)  # beyond the sample batch: measured on repeated inputs
    assert {16, 32} <= set(timer._at)
    cost = timer.ideal_s({8: [2, 1]})
    assert cost == pytest.approx(2 * f8 + b8)
    assert timer.ideal_s({}) == 0.0
