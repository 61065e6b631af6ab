"""Start a child network from its parent's trained weights wherever the two share a module."""

from __future__ import annotations

import os

import fsspec
import lightning.pytorch as pl
import torch


class WeightInheritance(pl.Callback):
    """At the start of a fresh fit, copy every tensor the child shares with a parent checkpoint; the rest keep their
    fresh init. A fit resumed from a checkpoint is left as restored.

    A child tensor ``name`` is looked up in the parent as ``name`` with its longest matching module prefix rewritten by
    ``mapping`` (child prefix → parent prefix; ``None`` means "nothing to inherit here"); names no prefix covers are
    looked up unchanged. It is copied when the parent has it with the same shape. ``copied`` and ``fresh`` record which
    tensors were inherited. Works with Lightning checkpoints (``state_dict`` key) and plain state dicts.
    """

    def __init__(self, checkpoint: str | os.PathLike, mapping: dict[str, str | None] | None = None) -> None:
        self.checkpoint = str(checkpoint)
        self.mapping = dict(mapping or {})
        self.copied: list[str] = []
        self.fresh: list[str] = []

    def parent_name(self, name: str) -> str | None:
        prefixes = [p for p in self.mapping if name == p or name.startswith(p + ".")]
        if not prefixes:
            return name
        prefix = max(prefixes, key=len)
        target = self.mapping[prefix]
        return None if target is None else target + name[len(prefix) :]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Copy the parent's tensors, unless the fit resumes: its checkpoint, restored before this hook, already holds
        the child's own (inherited, then trained) weights."""
        if trainer.ckpt_path is not None:
            return
        filesystem, path = fsspec.core.url_to_fs(self.checkpoint)
        if not filesystem.isfile(path):
            raise FileNotFoundError(f"parent checkpoint {self.checkpoint!r} does not exist; train the parent first")
        with filesystem.open(path, "rb") as file:
            parent = torch.load(file, map_location="cpu", weights_only=True)
        parent = parent.get("state_dict", parent)
        self.copied, self.fresh = [], []
        with torch.no_grad():
            for name, tensor in pl_module.state_dict(keep_vars=True).items():
                source = parent.get(self.parent_name(name) or "")
                if source is not None and source.shape == tensor.shape:
                    tensor.copy_(source)
                    self.copied.append(name)
                else:
                    self.fresh.append(name)
