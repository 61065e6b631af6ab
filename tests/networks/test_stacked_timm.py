"""timm's generic model contract (what its tests/test_models.py checks of every registered model), held by
nas_cifar and nas_imagenet: forward, backward, default_cfgs, TorchScript, features_only, fx forward and backward,
fx then TorchScript. Small C and layers keep each test to a second or two."""

import math

import pytest
import timm
import torch
from timm.models import get_notrace_functions, get_notrace_modules
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import lightning_nas.networks  # noqa: F401  (registers the timm models)
from lightning_nas.errors import ConfigError

SMALL = {"C": 8, "layers": 5}
MODELS = ["nas_cifar", "nas_imagenet"]


def _input(model: torch.nn.Module, batch_size: int) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(batch_size, *model.pretrained_cfg["input_size"])


def _fx(model: torch.nn.Module) -> torch.nn.Module:
    """The model traced by torchvision's fx feature extractor, returning its last node, as timm's tests trace."""
    tracer_kwargs = {"leaf_modules": get_notrace_modules(), "autowrap_functions": get_notrace_functions()}
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer_kwargs)
    return create_feature_extractor(model, train_return_nodes=[train_nodes[-1]], eval_return_nodes=[eval_nodes[-1]],
                                    tracer_kwargs=tracer_kwargs)


@pytest.mark.parametrize("name", MODELS)
def test_timm_entry_points_build_no_auxiliary_head_and_every_parameter_gets_a_gradient(name: str) -> None:
    model = timm.create_model(name, num_classes=42, **SMALL).train()
    assert model.aux_head is None
    outputs = model(_input(model, 2))
    outputs.mean().backward()
    assert outputs.shape == (2, 42) and not outputs.isnan().any()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("name", MODELS)
def test_default_cfg_pool_size_head_hidden_size_and_reset_classifier(name: str) -> None:
    model = timm.create_model(name, **SMALL).eval()
    cfg = model.pretrained_cfg
    x = _input(model, 1)
    features = model.forward_features(x)
    assert features.shape == (1, model.num_features, *cfg["pool_size"])
    pre_logits = model.forward_head(features, pre_logits=True)
    assert pre_logits.shape == (1, model.head_hidden_size) == (1, 16 * SMALL["C"])
    state = model.state_dict()
    assert f"{cfg['first_conv']}.weight" in state and f"{cfg['classifier']}.weight" in state

    model.reset_classifier(0)  # keeps the pooling
    assert model.num_classes == 0 and torch.equal(model(x), pre_logits)
    model.reset_classifier(0, "")
    assert model(x).shape == features.shape
    unpooled = timm.create_model(name, num_classes=0, global_pool="", **SMALL).eval()
    assert unpooled(x).shape == features.shape


def test_reset_classifier_resets_the_auxiliary_head_too() -> None:
    model = timm.create_model("nas_cifar", auxiliary=True, **SMALL).train()
    model.reset_classifier(3)
    logits, aux_logits = model.forward_with_aux(torch.randn(2, 3, 32, 32))
    assert logits.shape == aux_logits.shape == (2, 3)
    assert model.get_classifier().out_features == model.aux_head.classifier.out_features == 3


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("training", [True, False])
def test_reset_classifier_builds_the_heads_on_the_networks_device_dtype_and_mode(name: str, training: bool) -> None:
    model = timm.create_model(name, auxiliary=True, **SMALL).to(device="meta", dtype=torch.float64).train(training)
    model.reset_classifier(0)
    model.reset_classifier(2)
    heads = [*model.get_classifier().parameters(), *model.aux_head.classifier.parameters()]
    assert heads and {(p.device.type, p.dtype) for p in heads} == {("meta", torch.float64)}
    assert {module.training for module in model.modules()} == {training}


@pytest.mark.parametrize("name", MODELS)
def test_create_model_places_the_network_on_device_and_dtype(name: str) -> None:
    model = timm.create_model(name, device="meta", dtype=torch.float64, **SMALL)
    assert {(p.device.type, p.dtype) for p in model.parameters()} == {("meta", torch.float64)}


@pytest.mark.parametrize("name", MODELS)
def test_torchscript_matches_eager(name: str) -> None:
    with timm.set_scriptable(True):
        model = timm.create_model(name, **SMALL).eval()
    x = _input(model, 1)
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x), model(x))


@pytest.mark.parametrize("name", MODELS)
def test_features_only_follows_feature_info(name: str) -> None:
    model = timm.create_model(name, features_only=True, **SMALL).eval()
    channels, reductions = model.feature_info.channels(), model.feature_info.reduction()
    x = _input(model, 1)
    outputs = model(x)
    assert len(outputs) == len(channels) >= 3
    expected = {"nas_cifar": [1, 2, 4], "nas_imagenet": [4, 8, 16, 32]}[name]
    assert reductions == expected
    for c, r, o in zip(channels, reductions, outputs):
        assert o.shape == (1, c, math.ceil(x.shape[-2] / r), math.ceil(x.shape[-1] / r))
    assert torch.equal(outputs[-1], model.body.forward_features(x))  # the last feature is the final feature map


@pytest.mark.parametrize("name", MODELS)
def test_fx_forward_matches_eager_and_fx_backward_reaches_every_parameter(name: str) -> None:
    model = timm.create_model(name, **SMALL).eval()
    x = _input(model, 1)
    with torch.inference_mode():
        expected = model(x)
        traced = tuple(_fx(model)(x).values())
    assert torch.equal(torch.cat(traced), expected)

    model = timm.create_model(name, num_classes=42, **SMALL).train()
    outputs = torch.cat(tuple(_fx(model)(_input(model, 2)).values()))
    outputs.mean().backward()
    assert outputs.shape == (2, 42)
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("name", MODELS)
def test_fx_then_torchscript_runs_and_still_checks_the_input(name: str) -> None:
    with timm.set_scriptable(True):
        model = timm.create_model(name, **SMALL).eval()
    x = _input(model, 1)
    scripted = torch.jit.script(_fx(model))
    with torch.inference_mode():
        torch.testing.assert_close(torch.cat(tuple(scripted(x).values())), model(x))
        with pytest.raises(torch.jit.Error, match=r"expects images of shape \(batch, 3, H, W\)"):
            scripted(x[:, :1])


def test_fx_traced_model_keeps_the_input_check() -> None:
    traced = torch.fx.symbolic_trace(timm.create_model("nas_cifar", **SMALL).eval())
    with pytest.raises(ConfigError, match=r"NetworkCIFAR expects .* got \(2, 1, 32, 32\)"):
        traced(torch.randn(2, 1, 32, 32))
