import subprocess
import sys
import textwrap
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.func import functional_call

from lightning_nas.data import DigitsDataModule
from lightning_nas.genotypes import Genotype
from lightning_nas.spaces.darts import SearchNetwork
from lightning_nas.strategies.darts import DARTS, unrolled_arch_gradient

TINY = dict(num_classes=10, in_chans=1, C=4, layers=3, nodes=2)


def make_trainer(tmp_path: Path, max_epochs: int = 1, **kwargs) -> pl.Trainer:
    options = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    return pl.Trainer(**{**options, **kwargs})


def exact_unrolled_gradient(network, weights_batch, arch_batch, xi):
    """d/dα L_val(w − ξ ∇w L_train(w, α), α) by double backward through the virtual step."""
    params = dict(network.named_parameters())
    weight_names = [name for name in params if not name.startswith("alpha_")]

    def loss(values, batch):
        x, y = batch
        return F.cross_entropy(functional_call(network, values, (x,)), y)

    grads = torch.autograd.grad(loss(params, weights_batch), [params[n] for n in weight_names], create_graph=True)
    unrolled = {**params, **{n: params[n] - xi * g for n, g in zip(weight_names, grads)}}
    return torch.autograd.grad(loss(unrolled, arch_batch), network.arch_parameters())


def smooth_search_network() -> SearchNetwork:
    """A tiny float64 supernet whose loss is smooth: Softplus for ReLU and no max pooling, since a finite difference
    across a kink is wrong whatever the formula. Then the official ε = 0.01 / ‖v‖ is accurate to O(ε²)."""
    primitives = ("none", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
    network = SearchNetwork(C=2, layers=3, num_classes=3, in_chans=1, nodes=2, primitives=primitives).double()
    for module in list(network.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ReLU):
                setattr(module, name, torch.nn.Softplus())
    return network


def test_second_order_alpha_gradient_matches_exact_autograd():
    torch.manual_seed(0)
    network = smooth_search_network()
    weights_batch = (torch.randn(6, 1, 6, 6, dtype=torch.float64), torch.randint(0, 3, (6,)))
    arch_batch = (torch.randn(6, 1, 6, 6, dtype=torch.float64), torch.randint(0, 3, (6,)))
    xi = 0.5
    exact = torch.cat([g.flatten() for g in exact_unrolled_gradient(network, weights_batch, arch_batch, xi)])
    before = [w.detach().clone() for w in network.weight_parameters()]

    def loss_fn(batch):
        return F.cross_entropy(network(batch[0]), batch[1])

    unrolled_arch_gradient(network, loss_fn, weights_batch, arch_batch, xi)
    estimate = torch.cat([a.grad.flatten() for a in network.arch_parameters()])
    error = (estimate - exact).norm() / exact.norm()
    assert error < 1e-2

    # The Hessian-vector term matters here (the first-order gradient is far off), so the check has teeth: the buggy
    # port's ε/2 in place of 1/(2ε) would miss by about as much as first order.
    for p in network.parameters():
        p.grad = None
    loss_fn(arch_batch).backward()
    first_order = torch.cat([a.grad.flatten() for a in network.arch_parameters()])
    assert (first_order - exact).norm() / exact.norm() > 10 * error
    # The weights are restored exactly.
    assert all(torch.equal(w, b) for w, b in zip(network.weight_parameters(), before))


class StepSnapshots(pl.Callback):
    """Parameters before each optimizer step and after the batch."""

    def __init__(self) -> None:
        self.snapshots: list[dict[str, torch.Tensor]] = []

    def _take(self, module: DARTS) -> None:
        self.snapshots.append({n: p.detach().clone() for n, p in module.network.named_parameters()})

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._take(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._take(pl_module)


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {name for name in before if not torch.equal(before[name], after[name])}


def test_alpha_step_leaves_weights_and_weight_step_leaves_alpha(tmp_path):
    torch.manual_seed(0)
    module = DARTS(**TINY)
    snapshots = StepSnapshots()
    trainer = make_trainer(tmp_path, limit_train_batches=1, callbacks=[snapshots])
    trainer.fit(module, DigitsDataModule(mode="search", batch_size=16))
    before_alpha, before_w, after = snapshots.snapshots
    assert changed(before_alpha, before_w) == {"alpha_normal", "alpha_reduce"}
    weight_changes = changed(before_w, after)
    assert weight_changes and not weight_changes & {"alpha_normal", "alpha_reduce"}

    # The genotype file next to the checkpoints holds the derived architecture; the epoch's metrics were logged.
    files = list(tmp_path.rglob("genotype.json"))
    assert len(files) == 1 and Genotype.load(files[0]) == module.genotype()
    metrics = trainer.callback_metrics
    assert {"val/top1", "val/loss", "arch/entropy_normal", "arch/entropy_reduce"} <= set(metrics)
    assert 0 < metrics["arch/entropy_normal"] <= torch.log(torch.tensor(8.0)) + 1e-6


def test_unrolled_search_runs_and_rejects_eval_batches(tmp_path):
    module = DARTS(**TINY, unrolled=True)
    make_trainer(tmp_path, limit_train_batches=1).fit(module, DigitsDataModule(mode="search", batch_size=16))
    with pytest.raises(ValueError, match="data.mode=search"):
        make_trainer(tmp_path, limit_train_batches=1).fit(DARTS(**TINY), DigitsDataModule(mode="eval", batch_size=16))


def search(
    tmp_path: Path, max_epochs: int, callbacks: tuple[pl.Callback, ...] = (), ckpt_path: str | None = None
) -> DARTS:
    pl.seed_everything(0)
    module = DARTS(**TINY)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = make_trainer(tmp_path, max_epochs=max_epochs, callbacks=[checkpoint, *callbacks])
    trainer.fit(module, DigitsDataModule(mode="search", batch_size=16), ckpt_path=ckpt_path)
    return module


@pytest.mark.slow
def test_resumed_search_ends_with_the_same_alpha_as_an_uninterrupted_one(tmp_path, stop_after_epoch):
    uninterrupted = search(tmp_path / "full", max_epochs=2)
    interrupted = search(tmp_path / "part", max_epochs=2, callbacks=(stop_after_epoch(0),))
    assert not torch.equal(interrupted.network.alpha_normal, uninterrupted.network.alpha_normal)
    resumed = search(tmp_path / "part", max_epochs=2, ckpt_path=str(tmp_path / "part" / "last.ckpt"))
    for a, b in zip(resumed.network.parameters(), uninterrupted.network.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    w_lr = [m.optimizers()[0].param_groups[0]["lr"] for m in (resumed, uninterrupted)]
    assert w_lr[0] == w_lr[1] < 0.025


DDP_SCRIPT = """
import sys, torch, lightning.pytorch as pl
from lightning_nas.data import DigitsDataModule
from lightning_nas.strategies.darts import DARTS

class Dump(pl.Callback):
    def on_fit_end(self, trainer, module):
        parameters = {name: p.detach() for name, p in module.network.named_parameters()}
        torch.save(parameters, f"{sys.argv[1]}/rank{trainer.global_rank}.pt")

pl.seed_everything(0)
module = DARTS(num_classes=10, in_chans=1, C=4, layers=3, nodes=2, unrolled=True)
trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, limit_train_batches=3,
                     limit_val_batches=1, num_sanity_val_steps=0, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=sys.argv[1], callbacks=[Dump()])
trainer.fit(module, DigitsDataModule(mode="search", batch_size=8))
"""


@pytest.mark.slow
def test_ddp_keeps_alpha_and_weights_identical_on_both_ranks(tmp_path):
    script = tmp_path / "ddp_search.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    pl.seed_everything(0)
    initial = DARTS(num_classes=10, in_chans=1, C=4, layers=3, nodes=2).network.state_dict()
    assert set(rank0) == {name for name, _ in DARTS(**TINY).network.named_parameters()}
    for name in rank0:  # α and w (BN running statistics stay per rank, as in any DDP run without SyncBatchNorm)
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0, msg=name)
    assert not torch.equal(rank0["alpha_normal"], initial["alpha_normal"])
    assert not torch.equal(rank0["classifier.weight"], initial["classifier.weight"])
