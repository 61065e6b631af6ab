import lightning.pytorch as pl
import torch
from torch import nn

from lightning_nas.callbacks import WeightInheritance


class Net(pl.LightningModule):
    def __init__(self, layers: dict[str, nn.Module]) -> None:
        super().__init__()
        self.body = nn.ModuleDict(layers)

    def training_step(self, batch, batch_idx):
        return sum(p.sum() for p in self.parameters()) * 0.0

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self):
        return [torch.zeros(1)]


def test_copies_exactly_the_shared_tensors_with_matching_shapes(tmp_path):
    torch.manual_seed(0)
    parent = Net({"stem": nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)), "op0": nn.Linear(4, 4),
                  "head": nn.Linear(4, 10)})
    parent.body.stem[1].running_mean.fill_(3.0)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(parent)
    trainer.save_checkpoint(tmp_path / "parent.ckpt")

    child = Net({"stem": nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)), "op0": nn.Linear(4, 4),
                 "op1": nn.Linear(4, 4), "op2": nn.Linear(4, 4), "head": nn.Linear(8, 10)})
    before = {k: v.clone() for k, v in child.state_dict().items()}
    # op1 is the parent's op0 renumbered; op0 of the child is new (None); head changed shape.
    callback = WeightInheritance(tmp_path / "parent.ckpt", {"body.op1": "body.op0", "body.op0": None})
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[callback])
    trainer.fit(child)

    stem = ["body.stem.0.weight", "body.stem.0.bias", "body.stem.1.weight", "body.stem.1.bias", "body.stem.1.running_mean",
            "body.stem.1.running_var", "body.stem.1.num_batches_tracked"]
    # head.bias keeps its (10,) shape and is inherited; head.weight grew from 4 to 8 inputs and is not.
    assert sorted(callback.copied) == sorted(stem + ["body.op1.weight", "body.op1.bias", "body.head.bias"])
    assert sorted(callback.fresh) == sorted(["body.head.weight"] + [f"body.{m}.{p}" for m in ("op0", "op2")
                                                                     for p in ("weight", "bias")])
    parent_state, child_state = parent.state_dict(), child.state_dict()
    for name in stem:
        assert torch.equal(child_state[name], parent_state[name])
    assert torch.equal(child_state["body.stem.1.running_mean"], torch.full((4,), 3.0))
    assert torch.equal(child_state["body.op1.weight"], parent_state["body.op0.weight"])
    for name in callback.fresh:
        assert torch.equal(child_state[name], before[name])
    assert not torch.equal(child_state["body.op0.weight"], parent_state["body.op0.weight"])


def test_a_resumed_child_keeps_its_own_weights(tmp_path):
    def fit(module: Net, callbacks: list, ckpt_path=None, max_steps: int = 1) -> pl.Trainer:
        trainer = pl.Trainer(max_steps=max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, callbacks=callbacks)
        trainer.fit(module, ckpt_path=ckpt_path)
        return trainer

    parent = Net({"op0": nn.Linear(4, 4)})
    nn.init.constant_(parent.body.op0.weight, 1.0)
    fit(parent, []).save_checkpoint(tmp_path / "parent.ckpt")

    child = Net({"op0": nn.Linear(4, 4)})
    inherit = WeightInheritance(tmp_path / "parent.ckpt")
    trainer = fit(child, [inherit])
    assert torch.equal(child.body.op0.weight, torch.ones(4, 4)) and "body.op0.weight" in inherit.copied
    nn.init.constant_(child.body.op0.weight, 5.0)  # what the child's training made of them
    trainer.save_checkpoint(tmp_path / "child.ckpt")

    resumed = Net({"op0": nn.Linear(4, 4)})
    inherit = WeightInheritance(tmp_path / "parent.ckpt")
    fit(resumed, [inherit], ckpt_path=tmp_path / "child.ckpt", max_steps=2)
    assert torch.equal(resumed.body.op0.weight, torch.full((4, 4), 5.0))
    assert inherit.copied == [] and inherit.fresh == []
