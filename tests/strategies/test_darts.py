import math
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_nas.data import DigitsDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import Genotype
from lightning_nas.spaces.oneshot import gumbel_hard
from lightning_nas.spaces.nb201 import NB201Architecture
from lightning_nas.strategies.darts import DARTS

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


def test_fewer_than_three_layers_and_a_negative_skip_cap_are_refused():
    with pytest.raises(ConfigError, match=r"layers >= 3, got layers=2: .* set --model.layers 3 or more"):
        DARTS(**{**TINY, "layers": 2})
    with pytest.raises(ConfigError, match="max_skip_connect=-1 needs to be >= 0"):
        DARTS(**TINY, max_skip_connect=-1)


def test_warm_up_trains_only_w_then_alpha_and_the_end_of_fit_says_how_far_alpha_moved(tmp_path, capsys):
    torch.manual_seed(0)
    module = DARTS(**TINY, arch_warmup_epochs=1, arch_lr=0.1, train_config="recipes/train_digits.yaml")
    snapshots = StepSnapshots()
    trainer = make_trainer(tmp_path, max_epochs=2, limit_train_batches=1, callbacks=[snapshots])
    trainer.fit(module, DigitsDataModule(mode="search", batch_size=16))
    warm_w, warm_end, before_alpha, before_w, end = snapshots.snapshots
    assert changed(warm_w, warm_end) and not changed(warm_w, warm_end) & {"alpha_normal", "alpha_reduce"}
    assert changed(before_alpha, before_w) == {"alpha_normal", "alpha_reduce"}
    assert torch.equal(warm_w["alpha_normal"], before_alpha["alpha_normal"])

    printed = capsys.readouterr().out
    start, end_entropy = module.start_entropy["normal"], float(trainer.callback_metrics["arch/entropy_normal"])
    assert start == pytest.approx(math.log(8), abs=1e-5) and end_entropy < start
    assert f"α entropy (nats): normal {start:.3f} -> {end_entropy:.3f}" in printed
    assert f"supernet val/top1: {float(trainer.callback_metrics['val/top1']):.4f}" in printed
    genotype_file = Path(trainer.checkpoint_callback.dirpath) / "genotype.json"
    assert Genotype.load(genotype_file) == module.genotype()
    assert ("train the found cells: python -m lightning_nas.recipes.train fit --config recipes/train_digits.yaml "
            f"--model.genotype {genotype_file}") in printed


class PlantNaN(pl.Callback):
    """Poison one batch half with NaN images at (epoch, step) and keep the parameters as they were just before."""

    def __init__(self, half: str, epoch: int, step: int) -> None:
        self.half, self.epoch, self.step = half, epoch, step
        self.before: dict[str, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.step):
            batch[self.half][0].fill_(float("nan"))
            self.before = {n: p.detach().clone() for n, p in pl_module.network.named_parameters()}


@pytest.mark.parametrize(("half", "step_name"), [("arch", "α step"), ("weights", "w step")])
def test_non_finite_loss_stops_the_search_before_any_update(tmp_path, half, step_name):
    torch.manual_seed(0)
    module = DARTS(**TINY)
    plant = PlantNaN(half, epoch=0, step=1)
    with pytest.raises(FloatingPointError, match=f"in the {step_name} of epoch 0, step 1; stopped before updating"):
        make_trainer(tmp_path, callbacks=[plant]).fit(module, DigitsDataModule(mode="search", batch_size=16))
    after = {n: p.detach() for n, p in module.network.named_parameters()}
    assert all(torch.isfinite(p).all() for p in after.values())
    # The α step that raised changed nothing; when the w step raises, only the α step before it has updated α.
    expected_changes = set() if half == "arch" else {"alpha_normal", "alpha_reduce"}
    assert changed(plant.before, after) == expected_changes
    assert not list(tmp_path.rglob("genotype.json"))  # no epoch ended: nothing written


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
from lightning_nas.errors import ConfigError
from lightning_nas.spaces.oneshot import gumbel_hard
from lightning_nas.spaces.nb201 import NB201Architecture
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


def test_darts_searches_the_nas_bench_201_supernet(tmp_path, capsys):
    """The same DARTS module on another registered space's supernet: α moves, the genotype file holds a
    NAS-Bench-201 cell in the benchmark's string form, and options that supernet has not are refused in one line."""
    model = DARTS(num_classes=10, in_chans=1, C=4, layers=3, space="nb201", arch_lr=0.05)
    alpha = model.network.alpha.detach().clone()
    make_trainer(tmp_path, max_epochs=2).fit(model, datamodule=DigitsDataModule(mode="search", batch_size=16))
    assert not torch.equal(alpha, model.network.alpha.detach())
    written = next(tmp_path.rglob("genotype.json")).read_text()
    assert NB201Architecture.from_json(written) == model.genotype()
    output = capsys.readouterr().out
    assert "α entropy (nats): cell 1.609 ->" in output and "timm.create_model('nb201', genotype=" in output
    with pytest.raises(ConfigError, match="the nb201 supernet does not take partial_channels=2; leave partial_channels"):
        DARTS(space="nb201", partial_channels=2)
    with pytest.raises(ConfigError, match="NAS-Bench-201 ops must be among none, skip_connect"):
        DARTS(space="nb201", primitives=["sep_conv_3x3"])


def test_gdas_draws_ops_by_softmax_alpha_and_computes_only_the_drawn_op():
    """The Gumbel-max draw follows softmax(α) (frequencies of 20,000 draws within 0.015), the weights are exactly
    one-hot with the Gumbel softmax's gradient, and a mixed op runs only the drawn op."""
    alpha = torch.tensor([[2.0, 0.0, -1.0, 0.5]])
    torch.manual_seed(0)
    draws = torch.tensor([gumbel_hard(alpha, 1.0)[1][0] for _ in range(20_000)])
    frequencies = torch.bincount(draws, minlength=4) / len(draws)
    assert torch.allclose(frequencies, torch.softmax(alpha[0], 0), atol=0.015)
    alpha = alpha.clone().requires_grad_()
    torch.manual_seed(1)
    weights, chosen = gumbel_hard(alpha, 0.5)
    assert weights.tolist()[0] == [1.0 if k == chosen[0] else 0.0 for k in range(4)]
    (weights[0] * torch.arange(1.0, 5.0)).sum().backward()
    torch.manual_seed(1)  # the same Gumbel noise: the straight-through gradient is the soft sample's
    soft_alpha = alpha.detach().clone().requires_grad_()
    noise = -torch.empty_like(soft_alpha).exponential_().log()
    soft = torch.softmax((torch.log_softmax(soft_alpha, -1) + noise) / 0.5, -1)
    (soft[0] * torch.arange(1.0, 5.0)).sum().backward()
    assert torch.allclose(alpha.grad, soft_alpha.grad)

    model = DARTS(**TINY, sampler="gumbel")
    model.network.tau = 1.0
    calls = []
    for edge in model.network.cells[0].edges:
        for op in edge.ops:
            op.register_forward_hook(lambda module, args, out: calls.append(module))
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    assert len(calls) == len(model.network.cells[0].edges)  # one op per edge
    assert model.network.alpha_normal.grad.abs().sum() > 0


def test_gdas_anneals_its_temperature_and_refuses_what_it_cannot_do(tmp_path):
    model = DARTS(**TINY, sampler="gumbel", tau_max=10.0, tau_min=0.1)
    taus = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0:
                taus.append(pl_module.network.tau)

    make_trainer(tmp_path, max_epochs=3, callbacks=[Record()]).fit(model, DigitsDataModule(mode="search", batch_size=16))
    assert taus == pytest.approx([10.0, 5.05, 0.1])
    with pytest.raises(ConfigError, match="GDAS .* is first order on whole channels"):
        DARTS(**TINY, sampler="gumbel", unrolled=True)
    with pytest.raises(ConfigError, match="tau_min=20.0 must not exceed tau_max=10.0"):
        DARTS(**TINY, sampler="gumbel", tau_min=20.0)


def test_decoupled_arch_decay_forgets_in_the_stated_number_of_steps(tmp_path):
    """With arch_relaxation_steps=50 and no gradient, α decays to (1 - 1/50)^50 ≈ 1/e of itself in 50 α steps,
    whatever the arch lr; the paper's coupled L2 decay has no such fixed time."""
    for arch_lr in (0.1, 0.001):
        model = DARTS(**TINY, arch_lr=arch_lr, arch_relaxation_steps=50)
        optimizer = model.arch_optimizer()
        alpha = model.network.alpha_normal
        with torch.no_grad():
            alpha.fill_(1.0)
        for _ in range(50):
            alpha.grad = torch.zeros_like(alpha)
            optimizer.step()
        assert torch.allclose(alpha, torch.full_like(alpha, (1 - 1 / 50) ** 50), rtol=1e-5)


@pytest.mark.parametrize("space", ["pnas", "enas_micro"])  # no one-shot network; a shared child only
def test_a_space_without_a_mixture_supernet_is_refused_in_one_line(space):
    with pytest.raises(ConfigError) as refused:
        DARTS(space=space)
    assert str(refused.value) == (f"the {space} space has no mixture supernet, which DARTS, GDAS and β-DARTS search; "
                                  f"spaces that have one: darts, nb201")


def test_gdas_gives_alpha_a_gradient_when_the_drawn_op_is_none():
    """GDAS's baseline: the other ops' zero weights join the output, so a drawn `none` still moves α."""
    from lightning_nas.spaces.oneshot import MixedOp

    edge = MixedOp(4, 1, ("none", "skip_connect", "avg_pool_3x3"))
    alpha = torch.tensor([[20.0, 0.0, 0.0]], requires_grad=True)  # `none` all but surely drawn
    weights, chosen = gumbel_hard(alpha, 1.0)
    assert chosen == [0]
    out = edge(torch.randn(2, 4, 5, 5), weights[0], chosen=0)
    assert torch.equal(out, torch.zeros_like(out))  # `none`, and the added weights are exactly 0
    (out - 1).pow(2).sum().backward()
    assert alpha.grad.abs().sum() > 0
