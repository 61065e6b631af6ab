"""Export (docs/export.md): a final-training checkpoint to a plain timm model, to torch.export and to ONNX."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import timm
import torch

from lightning_nas.data import DigitsDataModule
from lightning_nas.strategies.final_training import FinalTraining


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of a tiny digits network with its auxiliary head, checkpointed by the Trainer."""
    root = tmp_path_factory.mktemp("export")
    pl.seed_everything(0)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=3, limit_val_batches=1,
                         default_root_dir=root, logger=False, enable_progress_bar=False, enable_model_summary=False)
    module = FinalTraining("DARTS_V2", C=4, layers=3, num_classes=10, in_chans=1)
    trainer.fit(module, DigitsDataModule(batch_size=16))
    path = root / "trained.ckpt"
    trainer.save_checkpoint(path)
    return path


def _digits(count: int) -> torch.Tensor:
    return torch.stack([DigitsDataModule().make_test_set()[i][0] for i in range(count)])


def test_checkpoint_to_timm_model_and_back_through_save_for_hf(checkpoint: Path, tmp_path: Path) -> None:
    module = FinalTraining.load_from_checkpoint(checkpoint, weights_only=True).eval()
    model = module.timm_model()
    x = _digits(4)
    assert model.aux_head is None and module.network.aux_head is not None
    torch.testing.assert_close(model(x), module(x), rtol=0, atol=0)
    cfg = model.pretrained_cfg
    assert (cfg["input_size"], cfg["mean"], cfg["std"], cfg["pool_size"]) == ((1, 8, 8), (0.3,), (0.4,), (2, 2))
    assert timm.data.resolve_model_data_config(model)["mean"] == (0.3,)

    timm.models.save_for_hf(model, tmp_path / "exported")
    reloaded = timm.create_model(f"local-dir:{tmp_path / 'exported'}", pretrained=True).eval()
    assert reloaded.genotype == module.genotype and reloaded.pretrained_cfg["input_size"] == (1, 8, 8)
    torch.testing.assert_close(reloaded(x), model(x), rtol=0, atol=0)


def test_torch_export_matches_eager_for_any_batch_size(checkpoint: Path) -> None:
    model = FinalTraining.load_from_checkpoint(checkpoint, weights_only=True).timm_model()
    example = torch.randn(2, *model.pretrained_cfg["input_size"])
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    x = _digits(5)
    torch.testing.assert_close(program.module()(x), model(x))


def test_onnx_export_matches_eager(checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript", reason="torch.onnx.export needs the onnx and onnxscript packages")
    onnxruntime = pytest.importorskip("onnxruntime")
    model = FinalTraining.load_from_checkpoint(checkpoint, weights_only=True).timm_model()
    x = _digits(3)
    torch.onnx.export(model, (x,), tmp_path / "model.onnx", dynamo=True)
    session = onnxruntime.InferenceSession(tmp_path / "model.onnx")
    (logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(logits), model(x), rtol=1e-4, atol=1e-5)
