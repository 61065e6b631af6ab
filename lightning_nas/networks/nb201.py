"""NAS-Bench-201's network (``lightning_nas.spaces.nb201.network``) registered with timm as ``nb201``: its default
config (CIFAR-10's mean and std, 32x32 input) and the entry point ``timm.create_model("nb201",
genotype="|nor_conv_3x3~0|+|...|")`` calls."""


from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from lightning_nas.data.cifar10 import CIFAR_MEAN, CIFAR_STD
from lightning_nas.spaces.nb201 import BEST_CIFAR10, NB201Network, resolve_nb201

__all__ = ["BEST_CIFAR10", "NB201Network", "nb201", "resolve_nb201"]

default_cfgs = generate_default_cfgs({
    "nb201.untrained": {"url": "", "num_classes": 10, "input_size": (3, 32, 32), "pool_size": (8, 8), "crop_pct": 1.0,
                        "interpolation": "bicubic", "mean": CIFAR_MEAN, "std": CIFAR_STD, "first_conv": "stem.0",
                        "classifier": "classifier"},
})


@register_model
def nb201(pretrained: bool = False, **kwargs: Any) -> NB201Network:
    """NAS-Bench-201's network around ``genotype`` (a cell string or a file; the benchmark's best CIFAR-10 cell by
    default)."""
    return build_model_with_cfg(NB201Network, "nb201", pretrained, feature_cfg={"feature_cls": "hook",
                                "out_indices": (0, 1, 2)}, **kwargs)
