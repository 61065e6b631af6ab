"""The ENAS LightningModule: a tiny search writes its architecture; the controller learns a planted reward (and a
negated one fails); held-out scoring and derivation; bad arguments; resume continues exactly; DDP keeps ranks equal;
on NAS-Bench-201's supernet (a registered space searched by its decisions) the same, with its genotype file; the
authors' spaces through the registry build what they built before; a space defined here, offering only a shared
child, is searched too, and a space without one is refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import pytest
import torch

from lightning_nas.data import DigitsDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.files import write_atomic
from lightning_nas.genotypes import Genotype
from lightning_nas.ops import create_op
from lightning_nas.spaces import SPACES, SearchSpace, spaces_offering
from lightning_nas.spaces.enas_macro import MacroArchitecture
from lightning_nas.spaces.enas_micro import MicroArchitecture
from lightning_nas.spaces.nb201 import NB201Architecture
from lightning_nas.strategies.enas import ENAS
from lightning_nas.strategies.enas_controller import DecisionController, MacroController, MicroController

TINY = dict(in_chans=1, C=4, num_layers=3, controller_steps=2, controller_aggregate=2, derive_samples=2, lstm_size=8,
            compare_samples=2)


def fit(root: Path, epochs: int, ckpt_path: str | None = None, **model_args) -> ENAS:
    pl.seed_everything(0)
    return fit_model(root, epochs, ENAS(**{**TINY, **model_args}), ckpt_path)


def fit_model(root: Path, epochs: int, model: ENAS, ckpt_path: str | None = None) -> ENAS:
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
    assert set(model.comparison) == {"controller_top1", "uniform_top1"}
    assert all(0 <= value <= 1 for value in model.comparison.values())
    last = json.loads((tmp_path / "ckpt" / "genotype_history.jsonl").read_text().splitlines()[-1])
    assert last["metrics"]["samples/uniform_top1"] == pytest.approx(model.comparison["uniform_top1"])  # report signal


def test_baseline_can_start_at_the_first_reward(tmp_path: Path) -> None:
    model = ENAS(**TINY, baseline_from_first_reward=True)
    assert model.baseline.isnan()
    model = fit(tmp_path, epochs=1, baseline_from_first_reward=True, controller_steps=1, controller_aggregate=1)
    assert float(model.baseline) == pytest.approx(model.history[0]["reward"], abs=1e-6)  # b = R_1, then b -= 0.01 (b - R_1)


class PlantedENAS(ENAS):
    """ENAS rewarded by a planted score in place of the child's accuracy: the fraction of edges using ``identity``,
    times ``sign``. Sampling, baseline, REINFORCE step, derivation and comparison are the real ones."""

    def __init__(self, sign: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sign = sign

    def accuracy(self, arch: tuple[int, ...], batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        cells = MicroArchitecture.from_decisions(arch)  # ENAS scores the space's decisions
        ops = [op for _, op in cells.normal + cells.reduce]
        return torch.tensor(self.sign * ops.count("identity") / len(ops))


def planted_search(root: Path, sign: float) -> tuple[PlantedENAS, dict[str, float]]:
    """300 controller samples of a 2-node controller without the authors' squashing and op bias (their bound keeps
    identity below p = 0.26, too close to the uniform 0.2 to tell apart in a fast test); then the planted score of
    100 controller samples vs 100 uniform ones."""
    pl.seed_everything(0)
    model = PlantedENAS(sign, in_chans=1, C=2, num_layers=3, num_nodes=2, lstm_size=16, tanh_constant=None,
                        op_bias=(0.0,) * 5, controller_lr=0.1, controller_steps=10, controller_aggregate=10,
                        baseline_decay=0.9, baseline_from_first_reward=True, derive_samples=1, compare_samples=0)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", devices=1, limit_train_batches=1, limit_val_batches=0,
                         logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         default_root_dir=root)
    trainer.fit(model, DigitsDataModule(val_split=16, batch_size=16))
    model.sign = 1.0  # score what was planted, whatever the controller was rewarded with
    return model, model.compare_with_uniform(100)


def test_controller_learns_a_planted_reward_and_a_negated_one_does_not_pass(tmp_path: Path) -> None:
    model, comparison = planted_search(tmp_path / "planted", 1.0)
    rewards = [row["reward"] for row in model.history]
    assert rewards[-1] > rewards[0] + 0.05
    assert comparison["controller_top1"] > comparison["uniform_top1"] + 0.05
    _, negated = planted_search(tmp_path / "negated", -1.0)
    assert negated["controller_top1"] < negated["uniform_top1"]


def derive_takes_the_best(model: ENAS) -> tuple[Any, list[Any]]:
    """``derive`` returns the best, by held-out accuracy on the shared weights, of the samples it draws."""
    torch.manual_seed(1)
    archs = model.sample_archs(model.hparams.derive_samples)
    torch.manual_seed(1)
    derived, top1 = model.derive()
    scores = model.heldout_accuracy(archs)
    assert derived == archs[int(scores.argmax())] and top1 == pytest.approx(float(scores.max()))
    return derived, archs


def test_heldout_scores_count_every_heldout_image_repeatably_and_derive_takes_the_best(tmp_path: Path) -> None:
    model = fit(tmp_path, epochs=1)
    arch = model.sample_archs(1)[0]
    scores = model.heldout_accuracy([arch, arch])
    assert scores[0] == scores[1] == model.heldout_accuracy([arch])[0]  # no dropout noise: a function of the weights
    assert float(scores[0]) * 100 == pytest.approx(round(float(scores[0]) * 100), abs=1e-3)  # a count out of all 100
    derive_takes_the_best(model)


def test_too_few_layers_is_a_config_error_naming_value_and_fix() -> None:
    """The other counts are constrained types, refused while the recipe parses (tests/recipes/test_enas.py)."""
    with pytest.raises(ConfigError, match=r"^model\.num_layers=2 .*: set --model\.num_layers 3 or more$"):
        ENAS(**{**TINY, "num_layers": 2})


def test_search_without_heldout_images_stops_before_training(tmp_path: Path) -> None:
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         default_root_dir=tmp_path)
    with pytest.raises(ConfigError, match="data.val_split=0: ENAS rewards the controller on held-out"):
        trainer.fit(ENAS(**TINY), DigitsDataModule(val_split=0, batch_size=16))
    assert trainer.global_step == 0


def test_macro_search_writes_a_macro_architecture(tmp_path: Path) -> None:
    model = fit(tmp_path, epochs=1, space="enas_macro", num_layers=6)
    arch = MacroArchitecture.load(tmp_path / "ckpt" / "genotype.json")
    assert arch == model.genotype() and arch.num_layers == 6
    checkpoint = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert MacroArchitecture(**checkpoint["enas_derived"]) == arch  # the architecture's fields, as before decisions


@pytest.mark.parametrize("space, alias, num_layers, controller, child_params, controller_params", [
    ("enas_micro", "micro", 3, MicroController, 250_398, 741),
    ("enas_macro", "macro", 6, MacroController, 6_046, 752),
])
def test_the_authors_spaces_through_the_registry_build_the_child_and_controller_they_built_before(
        space: str, alias: str, num_layers: int, controller: type, child_params: int, controller_params: int) -> None:
    """The parameter counts are those ENAS(space="micro"/"macro") built before it asked the registered spaces for
    their shared child; the old names still work and build the same, with the same initial weights."""
    models = []
    for name in (space, alias):
        torch.manual_seed(0)
        models.append(ENAS(space=name, in_chans=1, C=4, num_layers=num_layers, lstm_size=8))
    registered, aliased = models
    assert registered.search_space.name == aliased.search_space.name == space
    assert isinstance(registered.controller, controller)
    assert sum(p.numel() for p in registered.child.parameters()) == child_params
    assert sum(p.numel() for p in registered.controller.parameters()) == controller_params
    aliased_state = aliased.state_dict()
    for key, value in registered.state_dict().items():
        torch.testing.assert_close(aliased_state[key], value, rtol=0, atol=0, msg=key)


def test_the_micro_space_nodes_and_macro_space_layers_follow_the_arguments() -> None:
    micro = ENAS(**{**TINY, "num_nodes": 3})
    assert micro.search_space.nodes == 3 and micro.controller.num_nodes == 3 and micro.child.num_nodes == 3
    macro = ENAS(**{**TINY, "space": "enas_macro", "num_layers": 6})
    assert macro.search_space.layers == 6 and macro.controller.num_layers == 6 and macro.child.num_layers == 6


def test_a_space_without_a_shared_child_or_no_space_at_all_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError) as refused:
        ENAS(**{**TINY, "space": "darts"})
    assert str(refused.value) == ("the darts space has no shared child, which ENAS and RSPS train along one "
                                  "architecture at a time; spaces that have one: "
                                  + ", ".join(spaces_offering("shared_child")))
    with pytest.raises(ConfigError, match=r"^model\.space='nope' is not a registered space; ENAS searches one with a "
                                          r"shared child: .*enas_micro.*nb201"):
        ENAS(**{**TINY, "space": "nope"})


@pytest.mark.slow
def test_resume_restores_controller_baseline_and_both_optimizers_exactly(tmp_path: Path) -> None:
    straight = fit(tmp_path / "straight", epochs=2)
    fit(tmp_path / "first", epochs=1)
    checkpoint = torch.load(tmp_path / "first" / "ckpt" / "last.ckpt", weights_only=False)
    assert len(checkpoint["optimizer_states"]) == 2 and "baseline" in checkpoint["state_dict"]
    resumed = fit(tmp_path / "first", epochs=2, ckpt_path=str(tmp_path / "first" / "ckpt" / "last.ckpt"))
    resumed_state = resumed.state_dict()  # once: the shared child has thousands of entries
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed_state[name], value, rtol=0, atol=0, msg=name)
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
                 lstm_size=8, compare_samples=2)
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


NB201_TINY = dict(TINY, space="nb201", C=2)


def test_nb201_search_writes_the_best_of_its_derive_samples_as_a_benchmark_cell(tmp_path: Path) -> None:
    model = fit(tmp_path, epochs=1, **NB201_TINY)
    text = (tmp_path / "ckpt" / "genotype.json").read_text()
    assert set(json.loads(text)) == {"arch"} and NB201Architecture.from_json(text) == model.genotype()
    assert model.search_space is not None and model.hparams.tanh_constant == 2.5 and model.hparams.temperature == 5.0
    derived, archs = derive_takes_the_best(model)
    assert model.search_space.decode(derived) in {model.search_space.decode(arch) for arch in archs}
    checkpoint = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    restored = ENAS(**{**TINY, **NB201_TINY})
    restored.on_load_checkpoint(checkpoint)
    assert restored.genotype() == NB201Architecture.from_json(text)  # the derived decisions travel in the checkpoint
    child_weights = model.trainer.optimizers[0].param_groups[0]["params"]
    assert not any(p is model.child.alpha for p in child_weights)  # the supernet's α is no weight of the child


class PlantedNB201ENAS(ENAS):
    """ENAS on nb201 rewarded by a planted score in place of the child's accuracy: the fraction of edges using
    nor_conv_3x3, times ``sign``. Sampling, baseline, REINFORCE step and comparison are the real ones."""

    def __init__(self, sign: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sign = sign

    def accuracy(self, arch: tuple[int, ...], batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return torch.tensor(self.sign * arch.count(NB201_CONV) / len(arch))


NB201_CONV = 3
"""nor_conv_3x3's index among the benchmark's ops."""


def planted_nb201_search(root: Path, sign: float) -> dict[str, float]:
    """200 controller samples with the nb201 defaults (tanh constant 2.5, temperature 5) at controller lr 0.05; then
    the planted score of 100 controller samples vs 100 uniform ones."""
    pl.seed_everything(0)
    model = PlantedNB201ENAS(sign, space="nb201", in_chans=1, C=2, num_layers=3, lstm_size=16, controller_lr=0.05,
                             controller_steps=20, controller_aggregate=5, baseline_decay=0.9,
                             baseline_from_first_reward=True, derive_samples=1, compare_samples=0)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, limit_train_batches=1, limit_val_batches=0,
                         logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         default_root_dir=root)
    trainer.fit(model, DigitsDataModule(val_split=16, batch_size=16))
    model.sign = 1.0  # score what was planted, whatever the controller was rewarded with
    return model.compare_with_uniform(100)


def test_nb201_controller_learns_a_planted_op_and_a_negated_reward_avoids_it(tmp_path: Path) -> None:
    learned = planted_nb201_search(tmp_path / "planted", 1.0)
    assert learned["controller_top1"] > learned["uniform_top1"] + 0.2  # uniform: 1/5 of the edges
    negated = planted_nb201_search(tmp_path / "negated", -1.0)
    assert negated["controller_top1"] < negated["uniform_top1"]


CHAIN_OPS = ("nor_conv_3x3", "avg_pool_3x3", "skip_connect")


@dataclass(frozen=True)
class ChainArchitecture:
    """An architecture of the chain space: one op per layer, saved as ``{"ops": [...]}``."""

    ops: tuple[str, ...]

    def to_dict(self) -> dict[str, list[str]]:
        return {"ops": list(self.ops)}

    def save(self, path: str | os.PathLike) -> str:
        return write_atomic(path, json.dumps(self.to_dict()) + "\n")


class ChainChild(torch.nn.Module):
    """The chain space's shared child: a stem, then per layer every op of CHAIN_OPS with its own weights, of which
    ``forward(x, path=decisions)`` runs the chosen one."""

    def __init__(self, C: int, layers: int, num_classes: int, in_chans: int) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(in_chans, C, 3, padding=1)
        self.layers = torch.nn.ModuleList(torch.nn.ModuleList(create_op(op, C, 1, affine=False) for op in CHAIN_OPS)
                                          for _ in range(layers))
        self.classifier = torch.nn.Linear(C, num_classes)

    def weight_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.parameters())

    def forward(self, x: torch.Tensor, *, path: Sequence[int]) -> torch.Tensor:
        x = self.stem(x)
        for ops, option in zip(self.layers, path):
            x = ops[option](x)
        return self.classifier(x.mean((2, 3)))


class ChainSpace(SearchSpace):
    """A space defined here, not in the package: a chain of ``layers`` layers, one op of CHAIN_OPS each. It offers a
    shared child and nothing else one-shot."""

    name = "chain"

    def __init__(self, layers: int = 3) -> None:
        self.layers = layers

    def choices(self) -> tuple[int, ...]:
        return (len(CHAIN_OPS),) * self.layers

    def decisions(self, arch: ChainArchitecture) -> tuple[int, ...]:
        return tuple(CHAIN_OPS.index(op) for op in arch.ops)

    def decode(self, decisions: Sequence[int]) -> ChainArchitecture:
        return ChainArchitecture(tuple(CHAIN_OPS[d] for d in decisions))

    def to_json(self, arch: ChainArchitecture) -> str:
        return json.dumps(arch.to_dict())

    def from_json(self, text: str) -> ChainArchitecture:
        return ChainArchitecture(tuple(json.loads(text)["ops"]))

    def shared_child(self, num_classes: int, in_chans: int, C: int = 16, layers: int = 3, **options: Any
                     ) -> ChainChild:
        return ChainChild(C, self.layers, num_classes, in_chans)


def test_a_space_defined_outside_the_package_offering_only_a_shared_child_is_searched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SPACES, "chain", ChainSpace)
    assert ChainSpace.offers("shared_child") and not ChainSpace.offers("mixture_supernet")
    pl.seed_everything(0)
    model = ENAS(**{**TINY, "space": "chain"})
    assert isinstance(model.controller, DecisionController) and model.controller.choices == (3, 3, 3)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    fit_model(tmp_path, 1, model)
    moved = {key.split(".")[0] for key, value in model.state_dict().items() if not torch.equal(value, before[key])}
    assert {"child", "controller", "baseline"} <= moved  # the shared weights, the controller and its baseline learned
    arch = model.genotype()
    assert isinstance(arch, ChainArchitecture) and len(arch.ops) == 3
    assert json.loads((tmp_path / "ckpt" / "genotype.json").read_text()) == arch.to_dict()
    assert set(model.comparison) == {"controller_top1", "uniform_top1"}
