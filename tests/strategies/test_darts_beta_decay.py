"""β-DARTS's Beta-Decay regulariser (``DARTS(beta_decay=λ)``): its gradient, its schedule in the α step, and what it
does to α on a planted task."""

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

from lightning_nas.data import DigitsDataModule
from lightning_nas.strategies.darts import DARTS, beta_decay_loss
from lightning_nas.strategies.darts_architect import Batch

NB201 = dict(num_classes=10, in_chans=1, C=4, layers=3, space="nb201")


def make_trainer(tmp_path: Path, max_epochs: int, limit_train_batches: int, **kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, max_epochs=max_epochs, limit_train_batches=limit_train_batches,
                      limit_val_batches=1, num_sanity_val_steps=0, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path, **kwargs)


def test_beta_decay_gradient_matches_finite_differences():
    """The regulariser is the mean over every edge of logsumexp(α_edge); its gradient, checked against central
    finite differences in double precision, is softmax(α_edge) / #edges."""
    torch.manual_seed(0)
    nb201 = [torch.randn(6, 5, dtype=torch.float64, requires_grad=True)]
    darts = [torch.randn(14, 8, dtype=torch.float64, requires_grad=True) for _ in ("normal", "reduce")]
    for alphas in (nb201, darts):
        assert torch.autograd.gradcheck(lambda *a: beta_decay_loss(a), alphas, eps=1e-6, atol=1e-7)
        edges = sum(a.shape[0] for a in alphas)
        for alpha, gradient in zip(alphas, torch.autograd.grad(beta_decay_loss(alphas), alphas)):
            torch.testing.assert_close(gradient, F.softmax(alpha.detach(), -1) / edges)
    alpha = nb201[0].detach()
    assert beta_decay_loss([alpha]) == pytest.approx(float(alpha.logsumexp(-1).mean()))


class ArchGradients(pl.Callback):
    """α, its gradient and λ_t at each α step (the arch optimizer's step), just before the update."""

    def __init__(self) -> None:
        self.alphas: list[torch.Tensor] = []
        self.gradients: list[torch.Tensor] = []
        self.weights: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        alpha = pl_module.network.alpha
        if optimizer.param_groups[0]["params"][0] is alpha:
            self.alphas.append(alpha.detach().clone())
            self.gradients.append(alpha.grad.detach().clone())
            self.weights.append(float(pl_module._beta_weight))


@pytest.mark.parametrize("unrolled", [False, True], ids=["first order", "second order"])
def test_alpha_step_adds_the_regulariser_with_lambda_rising_linearly_over_the_epochs(tmp_path, unrolled):
    """λ_t = λ · k / K in the k-th of K α epochs (after one warm-up epoch of w steps): 0 in the first, so both searches
    are identical until the second α step, whose gradient then differs from plain DARTS's by exactly
    λ_t · softmax(α) / #edges."""
    runs = []
    for beta_decay in (0.0, 6.0):
        pl.seed_everything(0)
        module = DARTS(**NB201, unrolled=unrolled, beta_decay=beta_decay, arch_lr=0.05, arch_warmup_epochs=1)
        record = ArchGradients()
        make_trainer(tmp_path, max_epochs=4, limit_train_batches=1, callbacks=[record]).fit(
            module, DigitsDataModule(mode="search", batch_size=8))
        runs.append(record)
    plain, beta = runs
    assert plain.weights == [0.0, 0.0, 0.0] and beta.weights == pytest.approx([0.0, 2.0, 4.0])
    torch.testing.assert_close(beta.gradients[0], plain.gradients[0], rtol=0, atol=0)
    # the second α step: the same α and weights before it (λ_0 = 0), so the difference is the regulariser's gradient
    torch.testing.assert_close(beta.alphas[1], plain.alphas[1], rtol=0, atol=0)
    expected = 2.0 * torch.softmax(plain.alphas[1], -1) / 6
    torch.testing.assert_close(beta.gradients[1] - plain.gradients[1], expected, rtol=1e-4, atol=1e-6)


PLANTED_OP = "avg_pool_3x3"


class PlantedDARTS(DARTS):
    """DARTS on a planted task: the α loss also rewards softmax(α)'s weight on ``PLANTED_OP`` on every edge, a clear
    signal whose right answer is known; the w step's loss is the supernet's own."""

    def loss(self, batch: Batch, alpha_grad: bool = True, weight_grad: bool = True) -> torch.Tensor:
        planted = -F.log_softmax(self.network.alpha, -1)[:, self.op_names.index(PLANTED_OP)].mean()
        return super().loss(batch, alpha_grad, weight_grad) + (planted if alpha_grad else 0.0)


def planted_search(tmp_path: Path, **options: float) -> torch.Tensor:
    pl.seed_everything(0)
    module = PlantedDARTS(**NB201, arch_lr=0.05, **options)
    make_trainer(tmp_path, max_epochs=3, limit_train_batches=10).fit(module, DigitsDataModule(mode="search",
                                                                                              batch_size=16))
    return module.network.alpha.detach()


def test_beta_decay_keeps_alpha_spread_smaller_on_a_planted_task(tmp_path):
    """After 30 α steps towards a planted op, α's spread (max - min on each edge) is smaller with the regulariser
    than without, while the planted op still leads every edge; λ = 0 (the negative control) is plain DARTS,
    bit for bit."""
    plain = planted_search(tmp_path / "plain")
    zero = planted_search(tmp_path / "zero", beta_decay=0.0)
    beta = planted_search(tmp_path / "beta", beta_decay=30.0)
    torch.testing.assert_close(zero, plain, rtol=0, atol=0)

    def spread(alpha: torch.Tensor) -> torch.Tensor:
        return alpha.max(-1).values - alpha.min(-1).values

    planted = DARTS(**NB201).op_names.index(PLANTED_OP)
    assert (plain.argmax(-1) == planted).all() and (beta.argmax(-1) == planted).all()
    assert (spread(beta) < 0.7 * spread(plain)).all(), (spread(beta), spread(plain))
