"""The DARTS networks (``lightning_nas.spaces.darts.network``: ``NetworkCIFAR``, ``NetworkImageNet``) registered with
timm as ``nas_cifar`` and ``nas_imagenet``: their default configs (mean, std, input size, first conv, classifier) and
the entry points ``timm.create_model`` calls. The entry points build no auxiliary head, as a timm model is used for
inference; the final-training module asks for one.
"""


from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from lightning_nas.data.cifar10 import CIFAR_MEAN, CIFAR_STD
from lightning_nas.spaces.darts import AuxiliaryHead, NetworkCIFAR, NetworkImageNet, StackedCellNetwork, check_input

__all__ = ["AuxiliaryHead", "NetworkCIFAR", "NetworkImageNet", "StackedCellNetwork", "check_input", "nas_cifar",
           "nas_imagenet"]


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {"url": "", "num_classes": 10, "input_size": (3, 32, 32), "pool_size": (8, 8), "crop_pct": 1.0,
            "interpolation": "bicubic", "mean": CIFAR_MEAN, "std": CIFAR_STD, "first_conv": "stem.0",
            "classifier": "classifier", **kwargs}


default_cfgs = generate_default_cfgs({
    "nas_cifar.untrained": _cfg(),
    "nas_imagenet.untrained": _cfg(num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.875,
                                   mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
                                   first_conv="stem.stem0.0"),
})


def _feature_cfg(levels: int) -> dict[str, Any]:
    """``features_only`` through forward hooks on the feature_info modules: a cell reads the two previous outputs,
    so the network is no chain of modules that timm's default FeatureListNet could cut."""
    return {"feature_cls": "hook", "no_rewrite": True, "out_indices": tuple(range(levels))}


@register_model
def nas_cifar(pretrained: bool = False, **kwargs: Any) -> NetworkCIFAR:
    """CIFAR network stacked from ``genotype`` (a published name, a genotype file or a Genotype; DARTS_V2 default)."""
    return build_model_with_cfg(NetworkCIFAR, "nas_cifar", pretrained, feature_cfg=_feature_cfg(3), **kwargs)


@register_model
def nas_imagenet(pretrained: bool = False, **kwargs: Any) -> NetworkImageNet:
    """ImageNet (mobile) network stacked from ``genotype`` (DARTS_V2 by default)."""
    return build_model_with_cfg(NetworkImageNet, "nas_imagenet", pretrained, feature_cfg=_feature_cfg(4), **kwargs)
