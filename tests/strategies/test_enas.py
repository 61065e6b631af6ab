"""The ENAS LightningModule: a tiny search writes its architecture; resume continues exactly; DDP keeps ranks equal."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from lightning_nas.data import DigitsDataModule
from lightning_nas.genotypes import Genotype
from lightning_nas.spaces.enas_macro import MacroArchitecture
from lightning_nas.strategies.enas import ENAS

TINY = dict(in_chans=1, C=4, num_layers=3, controller_steps=2, controller_aggregate=2, derive_samples=2, lstm_size=8)


def fit(root: Path, epochs: int, ckpt_path: str | None = None, **model_args) -> ENAS:
    pl.seed_everything(0)
    model = ENAS(**{**TINY, **model_args})
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, limit_train_batches=2, limit_val_batches=0,
                         default_root_dir=root, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[pl.callbacks.ModelCheckpoint(dirpath=root / "ckpt", save_last=True)])
    trainer.fit(model, DigitsDataModule(val_split=100, batch_size=16), ckpt_path=ckpt_path)
    return model


def test_micro_search_writes_a_genotype_and_updates_the_baseline(tmp_path: Path) -> None:
    model = fit(tmp_path, epochs=1)
    genotype = Genotype.load(tmp_path / "ckpt" / "genotype.json")
    assert genotype == model.genotype()
    assert 0 < float(model.baseline) < 1  # 4 rewards moved it from 0 towards accuracies in (0, 1]


def test_macro_search_writes_a_macro_architecture(tmp_path: Path) -> None:
    model = fit(tmp_path, epochs=1, space="macro", num_layers=6)
    arch = MacroArchitecture.load(tmp_path / "ckpt" / "genotype.json")
    assert arch == model.genotype() and arch.num_layers == 6


@pytest.mark.slow
def test_resume_restores_controller_baseline_and_both_optimizers_exactly(tmp_path: Path) -> None:
    straight = fit(tmp_path / "straight", epochs=2)
    fit(tmp_path / "first", epochs=1)
    checkpoint = torch.load(tmp_path / "first" / "ckpt" / "last.ckpt", weights_only=False)
    assert len(checkpoint["optimizer_states"]) == 2 and "baseline" in checkpoint["state_dict"]
    resumed = fit(tmp_path / "first", epochs=2, ckpt_path=str(tmp_path / "first" / "ckpt" / "last.ckpt"))
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0, msg=name)
    for a, b in zip(straight.trainer.optimizers, resumed.trainer.optimizers):
        for state_a, state_b in zip(a.state_dict()["state"].values(), b.state_dict()["state"].values()):
            for key in state_a:
                torch.testing.assert_close(state_b[key], state_a[key], rtol=0, atol=0)
    assert straight.genotype() == resumed.genotype() and straight.history == resumed.history


DDP_SCRIPT = textwrap.dedent("""
    import sys, torch, lightning.pytorch as pl
    from lightning_nas.data import DigitsDataModule
    from lightning_nas.strategies.enas import ENAS

    out = sys.argv[1]
    pl.seed_everything(0)
    model = ENAS(in_chans=1, C=4, num_layers=3, controller_steps=2, controller_aggregate=2, derive_samples=2,
                 lstm_size=8)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=2, strategy="ddp_find_unused_parameters_true",
                         limit_train_batches=3, limit_val_batches=0, logger=False, enable_progress_bar=False,
                         default_root_dir=out, callbacks=[pl.callbacks.ModelCheckpoint(dirpath=f"{out}/ckpt")])
    trainer.fit(model, DigitsDataModule(val_split=100, batch_size=16))
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, f"{out}/rank{trainer.global_rank}.pt")
""")


@pytest.mark.slow
def test_ddp_ranks_keep_identical_controller_and_shared_weights(tmp_path: Path) -> None:
    script = tmp_path / "ddp_enas.py"
    script.write_text(DDP_SCRIPT)
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=600,
                            env={"OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    fresh = ENAS(**TINY).state_dict()
    # BN running statistics stay per rank (each scores its own held-out batches); the search never uses them.
    for name, value in rank0.items():
        if not name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            torch.testing.assert_close(rank1[name], value, rtol=0, atol=0, msg=name)
    moved = [name for name in rank0 if name.startswith("controller.") and not torch.equal(rank0[name], fresh[name])]
    assert moved and float(rank0["baseline"]) > 0  # the controller trained, identically on both ranks
