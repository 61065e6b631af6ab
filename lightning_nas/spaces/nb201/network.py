"""The network NAS-Bench-201 trains every cell in (Dong & Yang, ICLR 2020).

A 3x3 conv stem with C channels, three stages of N cells at C, 2C and 4C channels joined by residual reductions,
BN-ReLU, global pooling and a linear classifier (C=16, N=5 in the benchmark). It speaks timm's model interface like
``NetworkCIFAR``; ``lightning_nas.networks`` registers it with timm as ``nb201`` (``timm.create_model("nb201",
genotype="|nor_conv_3x3~0|+|...|")``).
"""


import os

import torch
from timm.layers import create_classifier
from torch import nn

from lightning_nas.spaces.nb201.architecture import NB201Architecture, resolve_nb201
from lightning_nas.spaces.nb201.cell import NB201Cell, nb201_body

BEST_CIFAR10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
"""The cell with the best CIFAR-10 test accuracy in the benchmark (94.37 %), the default genotype."""


class NB201Network(nn.Module):
    """The benchmark's network around one NAS-Bench-201 cell."""

    def __init__(self, genotype: NB201Architecture | str | os.PathLike = BEST_CIFAR10, C: int = 16, N: int = 5,
                 num_classes: int = 10, in_chans: int = 3, global_pool: str = "avg",
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.genotype = resolve_nb201(genotype)
        self.num_classes, self.in_chans = num_classes, in_chans
        self.stem = nn.Sequential(nn.Conv2d(in_chans, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.cells = nb201_body(C, N, lambda width: NB201Cell(self.genotype.ops, width))
        self.lastact = nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU())
        self.num_features = self.head_hidden_size = 4 * C
        self.feature_info = [{"num_chs": C << stage, "reduction": 1 << stage, "module": f"cells.{(N + 1) * stage + N - 1}"}
                             for stage in range(3)]
        self.global_pool, self.classifier = create_classifier(4 * C, num_classes, pool_type=global_pool)
        self.to(device=device, dtype=dtype)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.lastact(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New classifier for ``num_classes`` (0: none), on the model's device and dtype; ``global_pool`` None keeps
        the pooling."""
        self.num_classes = num_classes
        pool_type = self.global_pool.pool_type if global_pool is None else global_pool
        weight = self.classifier.weight if isinstance(self.classifier, nn.Linear) else self.stem[0].weight
        self.global_pool, self.classifier = create_classifier(self.num_features, num_classes, pool_type=pool_type,
                                                              device=weight.device, dtype=weight.dtype)
        self.global_pool.train(self.training)
        self.classifier.train(self.training)
