import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from lightning_nas.callbacks import MedianStopping

REFERENCE = [[0.50, 0.60, 0.70, 0.75], [0.40, 0.55, 0.65, 0.70], [0.60, 0.70, 0.80, 0.85]]


class ScriptedCurve(pl.LightningModule):
    """Logs a given validation accuracy per epoch and counts the epochs it trained."""

    def __init__(self, curve: list[float]) -> None:
        super().__init__()
        self.curve = curve
        self.layer = nn.Linear(1, 1)
        self.epochs_trained = 0

    def training_step(self, batch, batch_idx):
        return self.layer.weight.sum() * 0.0

    def on_train_epoch_end(self):
        self.epochs_trained += 1

    def validation_step(self, batch, batch_idx):
        self.log("val/top1", self.curve[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self):
        return [torch.zeros(1, 1)]

    val_dataloader = train_dataloader


def fit(curve: list[float], callback: MedianStopping) -> ScriptedCurve:
    module = ScriptedCurve(curve)
    trainer = pl.Trainer(max_epochs=len(curve), logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, callbacks=[callback])
    trainer.fit(module)
    return module


def test_stops_a_clearly_bad_curve_and_records_the_epoch():
    callback = MedianStopping(curves=REFERENCE, grace_epochs=2)
    module = fit([0.30, 0.35, 0.40, 0.45], callback)
    assert callback.stopped_epoch == 2 and module.epochs_trained == 2
    assert callback.curve == pytest.approx([0.30, 0.35])
    assert len(callback.curves) == 3  # a stopped run does not become a reference curve


def test_lets_a_good_curve_finish_and_keeps_it_as_a_reference():
    callback = MedianStopping(curves=REFERENCE, grace_epochs=1)
    good = [0.55, 0.65, 0.75, 0.80]
    module = fit(good, callback)
    assert callback.stopped_epoch is None and module.epochs_trained == 4
    assert callback.curves[-1] == pytest.approx(good)
    assert callback.threshold(4) == pytest.approx(0.775)  # median of 0.75, 0.70, 0.85, 0.80


def test_needs_enough_reference_curves_and_minimises_when_asked():
    assert MedianStopping(curves=REFERENCE[:2], min_curves=3).threshold(1) is None
    callback = MedianStopping(monitor="val/top1", mode="min", curves=REFERENCE, grace_epochs=1)
    fit([0.9, 0.9, 0.9, 0.9], callback)  # above the median loss: stopped at once
    assert callback.stopped_epoch == 1
