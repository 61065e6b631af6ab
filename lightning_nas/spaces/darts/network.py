"""Final networks stacked from the cells of a Genotype: the CIFAR-10 and the ImageNet (mobile) networks of DARTS.

Both follow timm's model interface (``num_classes``, ``num_features``, ``head_hidden_size``, ``forward_features``,
``forward_head``, ``get_classifier``, ``reset_classifier``, ``pretrained_cfg``, ``feature_info``);
``lightning_nas.networks`` registers them with timm (``nas_cifar``, ``nas_imagenet``), so
``timm.create_model("nas_cifar", genotype="DARTS_V2")`` builds them and timm's generic model tests (backward,
TorchScript, fx, ``features_only``) hold for them.
"""


from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath, create_classifier
from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import GenotypeLike, resolve_genotype
from lightning_nas.spaces.darts.cell import Cell



class AuxiliaryHead(nn.Module):
    """Auxiliary classifier read after the 2/3-depth reduction: ReLU, 5x5 avg pool, 1x1 conv, 2x2 conv, linear.

    On CIFAR (8x8 maps, pool stride 3) and ImageNet (7x7 maps, pool stride 2) the 2x2 conv leaves 1x1; maps the
    pool would shrink below 2x2 (from 8x8 digits, or 7x7 from 28x28 images at stride 3) are pooled to 2x2 instead,
    larger ones are averaged after the conv.
    The official ImageNet head has no BN after the 2x2 conv; ``bn_after_conv`` keeps that difference.
    """

    def __init__(self, C: int, num_classes: int, pool_stride: int, bn_after_conv: bool) -> None:
        super().__init__()
        self.pool_stride = pool_stride
        self.pool = nn.AvgPool2d(5, stride=pool_stride, padding=0, count_include_pad=False)
        self.features = nn.Sequential(
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768) if bn_after_conv else nn.Identity(),
            nn.ReLU(inplace=True),
        )
        self.classifier: nn.Module = nn.Linear(768, num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        """A new linear classifier on the head's device and dtype, in its training mode (0 classes: none)."""
        weight = self.features[0].weight
        self.classifier = nn.Linear(768, num_classes, device=weight.device, dtype=weight.dtype) if num_classes > 0 \
            else nn.Identity()
        self.classifier.train(self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        x = self.pool(x) if min(x.shape[-2], x.shape[-1]) >= 5 + self.pool_stride else F.adaptive_avg_pool2d(x, 2)
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(x)


@torch.fx.wrap
def check_input(x: torch.Tensor, in_chans: int, min_size: int, network: str) -> torch.Tensor:
    """``x``, if it is a batch of ``in_chans``-channel images of at least ``min_size`` pixels; else a ConfigError.

    fx records it as one call on the data path, so traced models (and fx graphs pruned to their outputs) still check
    their input; TorchScript compiles it.
    """
    if x.dim() != 4 or x.shape[1] != in_chans or min(x.shape[-2], x.shape[-1]) < min_size:
        raise ConfigError(
            f"{network} expects images of shape (batch, {in_chans}, H, W) with H, W >= {min_size}; got "
            f"({', '.join([str(size) for size in x.shape])}). Resize the data or build the network with matching "
            f"in_chans."
        )
    return x


class StackedCellNetwork(nn.Module):
    """Stem, then ``layers`` cells (reductions at 1/3 and 2/3 depth, each cell reading the two previous outputs),
    global pooling and a linear classifier; an auxiliary head after the 2/3 reduction when ``auxiliary``.

    ``device`` and ``dtype`` (which ``timm.create_model`` passes on) move the built network; ``feature_info`` names
    the last output at each stride, for ``timm.create_model(..., features_only=True)``.
    """

    min_input_size = 4
    """Smallest input height/width the stem and the two reductions can take."""

    def __init__(
        self,
        genotype: GenotypeLike = "DARTS_V2",
        C: int = 36,
        layers: int = 20,
        num_classes: int = 10,
        in_chans: int = 3,
        auxiliary: bool = False,
        drop_path_rate: float = 0.0,
        global_pool: str = "avg",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments: {', '.join(kwargs)}")
        self.genotype = resolve_genotype(genotype)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_path_rate = drop_path_rate
        self.stem, C_prev_prev, C_prev, C_curr, reduction_prev = self._make_stem(in_chans, C)
        self.feature_info = self._stem_feature_info(C_prev)
        self.cells = nn.ModuleList()
        self.aux_index = 2 * layers // 3
        C_aux = C_prev
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cell = Cell(self.genotype, C_prev_prev, C_prev, C_curr, reduction, reduction_prev, drop_path_rate)
            self.cells.append(cell)
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
            if i == self.aux_index:
                C_aux = C_prev
            self._add_feature_info(C_prev, 2 if reduction else 1, f"cells.{i}")
        self.aux_head = self._make_aux_head(C_aux, num_classes) if auxiliary else None
        self.num_features = self.head_hidden_size = C_prev
        self.global_pool, self.classifier = create_classifier(C_prev, num_classes, pool_type=global_pool)
        self.to(device=device, dtype=dtype)

    def _add_feature_info(self, num_chs: int, stride: int, module: str) -> None:
        """Record ``module`` as the feature at its stride: it replaces the previous module at the same stride."""
        reduction = self.feature_info[-1]["reduction"] * stride
        if reduction == self.feature_info[-1]["reduction"]:
            self.feature_info.pop()
        self.feature_info.append({"num_chs": num_chs, "reduction": reduction, "module": module})

    def _make_stem(self, in_chans: int, C: int) -> tuple[nn.Module, int, int, int, bool]:
        """Return the stem and (C_prev_prev, C_prev, C of the first cell, whether the stem reduced last)."""
        raise NotImplementedError

    def _stem_feature_info(self, C_stem: int) -> list[dict[str, Any]]:
        """The stem's outputs as timm feature_info entries (channels, stride, module name)."""
        raise NotImplementedError

    def _make_aux_head(self, C: int, num_classes: int) -> AuxiliaryHead:
        raise NotImplementedError

    def set_drop_path_rate(self, rate: float) -> None:
        """Set the drop path probability of every cell (the final-training module raises it linearly per epoch)."""
        self.drop_path_rate = rate
        for module in self.cells.modules():
            if isinstance(module, DropPath):
                module.drop_prob = rate

    def forward_cells(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Final feature map and the output of the cell the auxiliary head reads."""
        if not torch.jit.is_scripting():  # a scripted model checks nothing, as the class name is not scriptable
            x = check_input(x, self.in_chans, self.min_input_size, type(self).__name__)
        s0, s1 = self._stem_outputs(x)
        aux_input = s1
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_index:
                aux_input = s1
        return s1, aux_input

    def _stem_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.stem(x)
        return s, s

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_cells(x)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and auxiliary logits (None in eval mode or without an auxiliary head), for training."""
        features, aux_input = self.forward_cells(x)
        aux_logits = self.aux_head(aux_input) if self.aux_head is not None and self.training else None
        return self.forward_head(features), aux_logits

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New classifier (and auxiliary classifier) for ``num_classes`` (0: none), on the network's device and dtype
        and in its training mode; ``global_pool`` None keeps the pooling, '' removes it."""
        self.num_classes = num_classes
        pool_type = self.global_pool.pool_type if global_pool is None else global_pool
        weight = next(self.parameters())
        self.global_pool, self.classifier = create_classifier(self.num_features, num_classes, pool_type=pool_type,
                                                              device=weight.device, dtype=weight.dtype)
        self.global_pool.train(self.training)
        self.classifier.train(self.training)
        if self.aux_head is not None:
            self.aux_head.reset_classifier(num_classes)

    def num_parameters(self, include_aux: bool = False) -> int:
        """Parameter count as the DARTS papers report it: everything outside the auxiliary head by default."""
        aux = set(map(id, self.aux_head.parameters())) if self.aux_head is not None else set()
        return sum(p.numel() for p in self.parameters() if include_aux or id(p) not in aux)


class NetworkCIFAR(StackedCellNetwork):
    """The CIFAR-10 network: a 3x3 conv stem with 3C channels, then the stacked cells (DARTS: C=36, 20 cells)."""

    stem_multiplier = 3

    def _make_stem(self, in_chans: int, C: int) -> tuple[nn.Module, int, int, int, bool]:
        C_stem = self.stem_multiplier * C
        stem = nn.Sequential(nn.Conv2d(in_chans, C_stem, 3, padding=1, bias=False), nn.BatchNorm2d(C_stem))
        return stem, C_stem, C_stem, C, False

    def _stem_feature_info(self, C_stem: int) -> list[dict[str, Any]]:
        return [{"num_chs": C_stem, "reduction": 1, "module": "stem"}]

    def _make_aux_head(self, C: int, num_classes: int) -> AuxiliaryHead:
        return AuxiliaryHead(C, num_classes, pool_stride=3, bn_after_conv=True)


class NetworkImageNet(StackedCellNetwork):
    """The ImageNet (mobile) network: two stride-2 stem stages (4x, then 2x), then the stacked cells
    (DARTS: C=48, 14 cells). The first cell sees the stride-4 output as its k-2 input."""

    min_input_size = 32
    if TYPE_CHECKING:  # for mypy only: TorchScript rejects module types in class annotations
        stem: nn.ModuleDict

    def __init__(self, genotype: GenotypeLike = "DARTS_V2", C: int = 48, layers: int = 14,
                 num_classes: int = 1000, **kwargs: Any) -> None:
        super().__init__(genotype, C=C, layers=layers, num_classes=num_classes, **kwargs)

    def _make_stem(self, in_chans: int, C: int) -> tuple[nn.Module, int, int, int, bool]:
        stem = nn.ModuleDict({
            "stem0": nn.Sequential(
                nn.Conv2d(in_chans, C // 2, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C // 2),
                nn.ReLU(inplace=True),
                nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C),
            ),
            "stem1": nn.Sequential(
                nn.ReLU(inplace=True),
                nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C),
            ),
        })
        return stem, C, C, C, True

    def _stem_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem["stem0"](x)
        return s0, self.stem["stem1"](s0)

    def _stem_feature_info(self, C_stem: int) -> list[dict[str, Any]]:
        return [{"num_chs": C_stem, "reduction": 4, "module": "stem.stem0"},
                {"num_chs": C_stem, "reduction": 8, "module": "stem.stem1"}]

    def _make_aux_head(self, C: int, num_classes: int) -> AuxiliaryHead:
        return AuxiliaryHead(C, num_classes, pool_stride=2, bn_after_conv=False)
