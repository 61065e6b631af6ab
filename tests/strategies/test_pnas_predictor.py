import lightning.pytorch as pl
import pytest
import torch
from torchmetrics.functional import spearman_corrcoef

from lightning_nas.data.predictor import PredictorDataModule, collate
from lightning_nas.spaces.pnas import PNASCell, PNASSpace, encode, expand, one_block_cells
from lightning_nas.strategies.pnas_predictor import AccuracyPredictor


def toy_accuracy(cell: PNASCell) -> float:
    """A made-up relation the predictor has to learn: separable convs help, pooling hurts, reading c_{k-1} helps."""
    score = 0.0
    for block in cell.blocks:
        for index, op in block.halves():
            score += {"sep_conv_3x3": 2, "sep_conv_5x5": 1.5, "sep_conv_7x7": 1, "avg_pool_3x3": -1}.get(op, 0)
            score += 0.5 * (index == 1)
    return 0.5 + 0.4 * score / (5 * len(cell))


def records(cells):
    return [{"cell": cell.to_list(), "accuracy": toy_accuracy(cell)} for cell in cells]


def tokens(cell_list) -> list[int]:
    return encode(PNASCell.from_list(cell_list))


@pytest.mark.parametrize("kind", ["lstm", "mlp"])
def test_predictor_ensemble_learns_a_toy_relation_and_ranks_the_next_b(kind):
    pl.seed_everything(0)
    cells = one_block_cells()
    data = PredictorDataModule(records(cells), tokens, num_folds=5, batch_size=32)
    growth = PNASSpace(nodes=3).progressive()  # 4 inputs: c_{k-2}, c_{k-1} and two earlier blocks
    predictor = AccuracyPredictor(growth.vocabularies, growth.step, kind=kind, embed_dim=16, hidden_size=16, lr=0.03)
    trainer = pl.Trainer(max_epochs=20, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, check_val_every_n_epoch=20)
    trainer.fit(predictor, data)
    assert trainer.callback_metrics["val/spearman"] > 0.8  # out-of-fold: every cell scored by a member that never saw it
    children = expand(cells[3])[::5]
    batch = collate([(encode(c), toy_accuracy(c), 0) for c in children])
    with torch.no_grad():
        predicted = predictor(batch["tokens"], batch["lengths"])
    assert spearman_corrcoef(predicted, batch["accuracy"]) > 0.6


def test_batches_pad_variable_lengths_and_folds_partition_the_results():
    cells = one_block_cells()[:7] + expand(one_block_cells()[0])[:8]
    data = PredictorDataModule(records(cells), tokens, num_folds=5, batch_size=64)
    batch = next(iter(data.val_dataloader()))
    assert batch["tokens"].shape == (15, 8) and batch["lengths"].tolist() == [4] * 7 + [8] * 8
    assert batch["tokens"][:7, 4:].eq(0).all()
    assert sorted(batch["fold"].bincount().tolist()) == [3, 3, 3, 3, 3]
    with pytest.raises(ValueError, match="at least num_folds=5"):
        PredictorDataModule(records(cells[:4]), tokens)
