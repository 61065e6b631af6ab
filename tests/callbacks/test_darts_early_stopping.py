from types import SimpleNamespace

import pytest
import torch

from lightning_nas.callbacks import DARTSEarlyStopping
from lightning_nas.ops import DARTS_PRIMITIVES
from lightning_nas.strategies.darts import DARTS

SKIP, SEP = DARTS_PRIMITIVES.index("skip_connect"), DARTS_PRIMITIVES.index("sep_conv_3x3")


def plant(module: DARTS, skip_edges: int, favourite: int = SEP) -> None:
    """α of the 2-node normal cell (5 edges, all kept but node 3's weakest): skip_connect on the first
    ``skip_edges`` edges, ``favourite`` on the others."""
    with torch.no_grad():
        module.network.alpha_normal.zero_()
        for edge in range(5):
            module.network.alpha_normal[edge, SKIP if edge < skip_edges else favourite] = 3.0 - 0.1 * edge


def end_epochs(callback: DARTSEarlyStopping, module: DARTS, epochs: range) -> SimpleNamespace:
    trainer = SimpleNamespace(current_epoch=0, should_stop=False)
    for epoch in epochs:
        trainer.current_epoch = epoch
        callback.on_train_epoch_end(trainer, module)
        if trainer.should_stop:
            break
    return trainer


def tiny(**kwargs) -> DARTS:
    return DARTS(num_classes=10, in_chans=1, C=4, layers=3, nodes=2, **kwargs)


def test_stops_when_the_raw_normal_cell_holds_too_many_skip_connects():
    module = tiny(max_skip_connect=1)  # the module's cap must not hide the collapse from the callback
    callback = DARTSEarlyStopping(max_skip_connect=1, patience=None)
    plant(module, skip_edges=1)
    assert not end_epochs(callback, module, range(3)).should_stop and callback.stopped_epoch is None
    plant(module, skip_edges=2)
    assert [op for op, _ in module.genotype().normal].count("skip_connect") == 1
    trainer = end_epochs(callback, module, range(3, 6))
    assert trainer.should_stop and callback.stopped_epoch == 3
    assert callback.reason == "the normal cell holds 2 skip_connects (more than 1)"


def test_stops_when_the_genotype_has_not_changed_for_patience_epochs():
    module = tiny()
    callback = DARTSEarlyStopping(max_skip_connect=None, patience=2)
    plant(module, skip_edges=0, favourite=SEP)
    end_epochs(callback, module, range(0, 2))  # epoch 1 unchanged once
    plant(module, skip_edges=0, favourite=DARTS_PRIMITIVES.index("dil_conv_3x3"))
    assert not end_epochs(callback, module, range(2, 4)).should_stop  # changed at 2, unchanged once at 3
    trainer = end_epochs(callback, module, range(4, 9))
    assert trainer.should_stop and callback.stopped_epoch == 4
    assert callback.reason == "the derived genotype has not changed for 2 epochs"

    resumed = DARTSEarlyStopping(max_skip_connect=None, patience=2)
    resumed.load_state_dict(callback.state_dict())
    assert (resumed.unchanged_epochs, resumed.stopped_epoch, resumed.last_genotype) == (
        2, 4, module.network.genotype().to_dict())


def test_alpha_warm_up_epochs_do_not_count():
    module = tiny(arch_warmup_epochs=3)
    plant(module, skip_edges=4)
    callback = DARTSEarlyStopping(max_skip_connect=1, patience=1)
    assert not end_epochs(callback, module, range(3)).should_stop and callback.last_genotype is None
    assert end_epochs(callback, module, range(3, 4)).should_stop and "4 skip_connects" in callback.reason


def test_refuses_meaningless_settings():
    with pytest.raises(ValueError, match="patience must be at least 1 epoch"):
        DARTSEarlyStopping(patience=0)
    with pytest.raises(ValueError, match="max_skip_connect must be >= 0"):
        DARTSEarlyStopping(max_skip_connect=-1)
