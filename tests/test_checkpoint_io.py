"""AtomicCheckpointIO: a process killed while it saves a checkpoint leaves the previous one whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from lightning_nas.checkpoint_io import AtomicCheckpointIO

SAVER = textwrap.dedent("""
    import sys, time
    import torch
    from lightning_nas.checkpoint_io import AtomicCheckpointIO

    class Stall:
        '''Pickled in the middle of a save: says so, then waits to be killed.'''
        def __reduce__(self):
            print("saving", flush=True)
            time.sleep(600)
            return (int, (0,))

    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1, "weights": torch.arange(1000.0)}, sys.argv[1])
    io.save_checkpoint({"epoch": 2, "weights": torch.zeros(1000), "stall": Stall()}, sys.argv[1])
""")


def test_a_kill_during_a_save_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    saver = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert saver.stdout.readline() == "saving\n"
        os.kill(saver.pid, signal.SIGKILL)
    finally:
        saver.wait(timeout=60)
    assert saver.returncode == -signal.SIGKILL
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["epoch"] == 1 and torch.equal(checkpoint["weights"], torch.arange(1000.0))
    (temporary,) = path.parent.glob(".last.ckpt.*.tmp")  # the interrupted save, beside its target, never renamed
    assert temporary.name == f".last.ckpt.{saver.pid}.tmp"
    AtomicCheckpointIO().save_checkpoint({"epoch": 3}, str(path))  # the next save clears what the killed one left
    assert torch.load(path, weights_only=True) == {"epoch": 3} and not any(path.parent.glob("*.tmp"))


def test_trainer_checkpoints_go_through_it(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    trainer = pl.Trainer(plugins=[io], max_epochs=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    assert trainer.strategy.checkpoint_io is io
    trainer.fit(BoringModel())
    (checkpoint,) = tmp_path.glob("**/*.ckpt")
    assert torch.load(checkpoint, weights_only=True)["global_step"] == 64
    assert [p.name for p in checkpoint.parent.iterdir()] == [checkpoint.name]  # no temporary left


def test_remote_paths_keep_lightnings_save(tmp_path: Path, monkeypatch) -> None:
    saved = []
    monkeypatch.setattr(pl.plugins.io.TorchCheckpointIO, "save_checkpoint", lambda self, *args: saved.append(args))
    AtomicCheckpointIO().save_checkpoint({"epoch": 1}, "memory://bucket/last.ckpt")
    assert saved == [({"epoch": 1}, "memory://bucket/last.ckpt", None)]
