"""What a CUDA graph needs of a step: fused optimizers that skip a non-finite step on the device and take a first
gradient late, tensor learning rates that the schedules write into."""

from __future__ import annotations

import pytest
import torch

from lightning_nas.strategies.cuda_graph import adam_options, fused_sgd
from lightning_nas.strategies.finite import nonfinite, skip_step_if


def test_fused_sgd_steps_as_sgd_and_takes_a_late_first_gradient() -> None:
    torch.manual_seed(0)
    used, late = torch.nn.Parameter(torch.randn(5)), torch.nn.Parameter(torch.randn(3))
    reference = [p.detach().clone().requires_grad_() for p in (used, late)]
    fused = fused_sgd([used, late], torch.tensor(0.1), momentum=0.9, weight_decay=1e-2, nesterov=True)
    plain = torch.optim.SGD(reference, 0.1, momentum=0.9, weight_decay=1e-2, nesterov=True)
    for step in range(3):
        for optimizer, (first, second) in ((fused, (used, late)), (plain, reference)):
            optimizer.zero_grad()
            first.grad = torch.full((5,), step + 1.0)
            if step:  # the second parameter's first gradient comes in the second step (GDAS, ENAS)
                second.grad = torch.full((3,), -1.0)
            optimizer.step()
    assert torch.allclose(used, reference[0]) and torch.allclose(late, reference[1])


def test_loading_a_state_without_some_momentum_buffers_makes_them() -> None:
    params = [torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))]
    old = torch.optim.SGD(params, 0.1, momentum=0.9)
    params[0].grad = torch.ones(2)
    old.step()  # a state with the first parameter's buffer only
    optimizer = fused_sgd(params, torch.tensor(0.1), momentum=0.9, weight_decay=0.0)
    optimizer.load_state_dict(old.state_dict())
    assert torch.equal(optimizer.state[params[0]]["momentum_buffer"], torch.ones(2))
    assert torch.equal(optimizer.state[params[1]]["momentum_buffer"], torch.zeros(2))


@pytest.mark.parametrize("make", [
    lambda p: fused_sgd(p, torch.tensor(0.1), momentum=0.9, weight_decay=3e-4),
    lambda p: torch.optim.Adam(p, torch.tensor(0.1), weight_decay=1e-3, **adam_options(torch.device("cpu"))),
], ids=["sgd", "adam"])
def test_a_non_finite_step_is_skipped_on_the_device(make) -> None:
    param = torch.nn.Parameter(torch.ones(4))
    optimizer = make([param])
    param.grad = torch.ones(4)
    skip_step_if(optimizer, nonfinite(param.grad))
    optimizer.step()
    before = param.detach().clone(), {k: v.clone() for k, v in optimizer.state[param].items()}
    param.grad = torch.tensor([1.0, float("nan"), 1.0, 1.0])
    found = nonfinite(torch.tensor(0.5), param.grad, None)
    assert found.dtype == torch.float32 and found.item() == 1.0
    skip_step_if(optimizer, found)
    optimizer.step()
    assert torch.equal(param, before[0])
    assert all(torch.equal(value, before[1][key]) for key, value in optimizer.state[param].items())


def test_schedules_write_into_a_tensor_learning_rate() -> None:
    lr = torch.tensor(0.1)
    optimizer = fused_sgd([torch.nn.Parameter(torch.ones(1))], lr, momentum=0.9, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 4, eta_min=0.001)
    schedule.step()
    assert optimizer.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(0.0855017856687341)
