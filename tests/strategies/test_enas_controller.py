"""The ENAS controllers: teacher-forced log-probabilities, REINFORCE, valid inputs, one trajectory through both cells;
the decisions controller of any registered space: its log-probability is the sum of its steps' log-softmaxes, a
distribution over all architectures, and REINFORCE concentrates it on a planted architecture (a constant reward
does not)."""

from __future__ import annotations

import itertools
from typing import Callable

import torch
import torch.nn.functional as F

from lightning_nas.spaces import create_space
from lightning_nas.spaces.enas_macro import MacroArchitecture
from lightning_nas.spaces.enas_micro import MicroArchitecture
from lightning_nas.strategies.enas_controller import DecisionController, MacroController, MicroController


def test_micro_log_prob_of_given_arch_equals_sampled_with_same_gradient() -> None:
    torch.manual_seed(0)
    controller = MicroController(lstm_size=16)
    for _ in range(3):
        sample = controller.sample()
        replay = controller.log_prob(sample.arch)
        assert replay.arch == sample.arch
        torch.testing.assert_close(replay.log_prob, sample.log_prob, rtol=0, atol=1e-5)
        torch.testing.assert_close(replay.entropy, sample.entropy, rtol=0, atol=1e-5)
        grads = [torch.autograd.grad(s.log_prob, controller.parameters()) for s in (sample, replay)]
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        assert sample.log_prob < 0 and sample.entropy > 0


def test_macro_log_prob_and_skip_penalty_of_given_arch_equal_sampled() -> None:
    torch.manual_seed(0)
    controller = MacroController(num_layers=6, lstm_size=16)
    sample = controller.sample()
    replay = controller.log_prob(sample.arch)
    assert replay.arch == sample.arch
    torch.testing.assert_close(replay.log_prob, sample.log_prob, rtol=0, atol=1e-5)
    torch.testing.assert_close(replay.skip_penalty, sample.skip_penalty, rtol=0, atol=1e-6)
    assert [len(row) for row in sample.arch.skips] == list(range(6))


def test_log_prob_is_a_distribution_over_one_decision() -> None:
    """Summing p(arch) over every value of the last skip decision of a 2-layer macro controller gives p(prefix)."""
    torch.manual_seed(0)
    controller = MacroController(num_layers=2, ops=("conv_3x3", "max_pool_3x3"), lstm_size=8)
    total = sum(
        controller.log_prob(MacroArchitecture((a, b), ((), (s,)))).log_prob.exp()
        for a in ("conv_3x3", "max_pool_3x3") for b in ("conv_3x3", "max_pool_3x3") for s in (0, 1)
    )
    torch.testing.assert_close(total, torch.tensor(1.0), rtol=0, atol=1e-5)


def test_inputs_never_point_at_later_nodes_and_cover_all_earlier_ones() -> None:
    torch.manual_seed(1)
    controller = MicroController(lstm_size=16)
    seen: dict[int, set[int]] = {node: set() for node in range(2, 7)}
    for _ in range(150):
        arch = controller.sample().arch
        for cell in (arch.normal, arch.reduce):
            for position, (index, _) in enumerate(cell):
                node = 2 + position // 2
                assert 0 <= index < node
                seen[node].add(index)
    assert seen == {node: set(range(node)) for node in range(2, 7)}


def test_reduction_cell_sampling_continues_from_the_normal_cell() -> None:
    """If the reduction sampler ignored the normal cell, log p(A, R) − log p(A, R') would not depend on A.

    At the authors' U(-0.1, 0.1) initialisation the LSTM state is tiny, so the weights are scaled up to what a
    trained controller has, to make the dependence visible well above rounding."""
    torch.manual_seed(2)
    controller = MicroController(lstm_size=16)
    with torch.no_grad():
        for parameter in controller.parameters():
            parameter.mul_(10.0)
    a, b = controller.sample().arch, controller.sample().arch
    r, r2 = controller.sample().arch.reduce, controller.sample().arch.reduce

    def ratio(normal: MicroArchitecture) -> torch.Tensor:
        joint = controller.log_prob(MicroArchitecture(normal.normal, r)).log_prob
        other = controller.log_prob(MicroArchitecture(normal.normal, r2)).log_prob
        return joint - other

    assert abs(float(ratio(a) - ratio(b))) > 1e-2


def test_authors_op_bias_favours_separable_convs_in_both_cells() -> None:
    """b = [10, 10, 0, 0, 0] inside tanh: sep convs get logit ≈ 1.1/2.5 ≈ 0.44 vs ≈ 0 (p ≈ 0.51 per choice in the
    reduction cell, ≈ 0.63 with the normal cell's fixed bias [0.25, 0.25, -0.25, ...])."""
    torch.manual_seed(3)
    controller = MicroController()
    counts = {"normal": 0, "reduce": 0}
    samples = 200
    with torch.no_grad():
        for _ in range(samples):
            arch = controller.sample().arch
            for cell in counts:
                counts[cell] += sum(op.startswith("sep_conv") for _, op in getattr(arch, cell))
    normal, reduce = (counts[cell] / (10 * samples) for cell in ("normal", "reduce"))
    assert abs(normal - 0.63) < 0.05 and abs(reduce - 0.51) < 0.05


def test_authors_op_bias_is_saturated_so_it_does_not_learn() -> None:
    """b = 10 inside the tanh: the sep convs' bias gets no gradient, the other ops' biases do."""
    torch.manual_seed(5)
    controller = MicroController(lstm_size=16)
    sample = controller.sample()
    (grad,) = torch.autograd.grad(sample.log_prob, [controller.op_logits.bias])
    assert grad[:2].abs().max() < 1e-6 and grad[2:].abs().max() > 1e-2


def test_squashing_bounds_the_entropy_of_a_saturated_controller() -> None:
    """With weights far past anything U(-0.1, 0.1) starts from, the authors' squashing keeps every 5-node sample
    above the documented 45-nat floor (58.5 is uniform); without the tanh and the op bias the same weights go far
    below it."""
    entropies = {}
    for tanh_constant, op_bias in ((1.1, (10.0, 10.0, 0.0, 0.0, 0.0)), (None, (0.0,) * 5)):
        torch.manual_seed(6)
        controller = MicroController(lstm_size=16, tanh_constant=tanh_constant, op_bias=op_bias)
        with torch.no_grad():
            for parameter in controller.parameters():
                parameter.mul_(100.0)
            entropies[tanh_constant] = [float(controller.sample().entropy) for _ in range(20)]
    assert 45.0 < min(entropies[1.1]) < 58.5
    assert max(entropies[None]) < 30.0


def test_reinforce_raises_probability_of_rewarded_choice() -> None:
    """Toy reward: 1 when node 3 of the normal cell reads c_{k-2} on its first edge, else 0 (p ≈ 1/3 at first; the
    tanh constant 1.1 caps it at e^1.1 / (e^1.1 + 2 e^-1.1) ≈ 0.82)."""
    torch.manual_seed(4)
    controller = MicroController(lstm_size=16)
    optimizer = torch.optim.Adam(controller.parameters(), lr=0.05)

    def frequency() -> float:
        with torch.no_grad():
            return sum(controller.sample().arch.normal[2][0] == 0 for _ in range(200)) / 200

    before = frequency()
    baseline = 0.0
    for _ in range(30):
        optimizer.zero_grad()
        loss = torch.zeros(())
        for _ in range(10):
            sample = controller.sample()
            reward = float(sample.arch.normal[2][0] == 0)
            baseline -= 0.1 * (baseline - reward)
            loss = loss - sample.log_prob * (reward - baseline)
        (loss / 10).backward()
        optimizer.step()
    after = frequency()
    assert 0.25 < before < 0.42 and after > before + 0.15


def test_decision_log_prob_is_the_sum_of_each_steps_log_softmax() -> None:
    """Replayed by hand: LSTM step d reads the embedding of option d-1 (g_emb first), logits 2.5 tanh(W_d h / 5)."""
    torch.manual_seed(0)
    controller = DecisionController((3, 2, 4), lstm_size=16)
    sample = controller.sample()
    replayed = controller.log_prob(sample.arch)
    state, x, expected, entropy = controller.initial_state(), controller.g_emb, torch.zeros(()), torch.zeros(())
    for d, option in enumerate(sample.arch):
        state = controller.lstm(x, state)
        log_p = F.log_softmax(2.5 * torch.tanh(controller.decision_logits[d](state[0]) / 5.0), dim=-1)[0]
        expected, entropy = expected + log_p[option], entropy - (log_p.exp() * log_p).sum()
        x = controller.decision_emb[d](torch.tensor([option])) if d < 2 else x
    torch.testing.assert_close(sample.log_prob, expected)
    torch.testing.assert_close(replayed.log_prob, expected)
    torch.testing.assert_close(sample.entropy, entropy.detach())
    sample.log_prob.backward()
    grads = {name: p.grad.clone() for name, p in controller.named_parameters() if p.grad is not None}
    controller.zero_grad()
    replayed.log_prob.backward()
    for name, p in controller.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], msg=name)  # every parameter takes part: none unused


def test_decision_probabilities_of_every_architecture_sum_to_one() -> None:
    torch.manual_seed(1)
    controller = DecisionController((3, 2, 4), lstm_size=8, tanh_constant=None, temperature=None)
    with torch.no_grad():
        total = sum(controller.log_prob(arch).log_prob.exp() for arch in itertools.product(range(3), range(2), range(4)))
    assert abs(float(total) - 1.0) < 1e-5


def test_decision_controller_samples_a_spaces_decisions() -> None:
    space = create_space("nb201")
    controller = DecisionController(space.choices())
    arch = space.decode(controller.sample().arch)
    assert space.decisions(arch) == controller.log_prob(space.decisions(arch)).arch


def reinforce(reward: Callable[[tuple[int, ...]], float], steps: int = 40, samples: int = 10) -> float:
    """ENAS's update on the decisions controller (Adam, moving-average baseline from 0, decay 0.9); returns the
    probability of the planted architecture after ``steps`` steps."""
    torch.manual_seed(0)
    controller = DecisionController((3, 2, 4), lstm_size=16, tanh_constant=None, temperature=None)
    optimizer = torch.optim.Adam(controller.parameters(), lr=0.05, betas=(0.0, 0.999), eps=1e-3)
    baseline = 0.0
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.zeros(())
        for _ in range(samples):
            sample = controller.sample()
            r = reward(sample.arch)
            baseline -= 0.1 * (baseline - r)
            loss = loss - sample.log_prob * (r - baseline)
        (loss / samples).backward()
        optimizer.step()
    with torch.no_grad():
        return float(controller.log_prob(PLANTED).log_prob.exp())


PLANTED = (2, 0, 3)
"""One of the 24 architectures of choices (3, 2, 4): p = 1/24 under the initial policy, about."""


def test_reinforce_concentrates_the_decisions_on_a_planted_architecture_and_a_constant_reward_does_not() -> None:
    assert reinforce(lambda arch: float(arch == PLANTED)) > 0.8
    assert reinforce(lambda arch: 1.0) < 0.15
