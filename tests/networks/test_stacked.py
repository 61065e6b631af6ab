import pytest
import timm
import torch

from lightning_nas.genotypes import Genotype, published_genotypes
from lightning_nas.networks import NetworkCIFAR, NetworkImageNet

PUBLISHED = sorted(published_genotypes())


def test_darts_v2_cifar_parameter_count_matches_official_code() -> None:
    network = NetworkCIFAR("DARTS_V2", C=36, layers=20, num_classes=10, auxiliary=True)
    assert network.num_parameters() == 3_349_342
    assert network.num_parameters(include_aux=True) - network.num_parameters() == 476_426


def test_darts_v2_imagenet_parameter_count_matches_official_code() -> None:
    network = NetworkImageNet("DARTS_V2", C=48, layers=14, num_classes=1000, auxiliary=True)
    assert network.num_parameters() == 4_718_752
    assert network.num_parameters(include_aux=True) - network.num_parameters() == 1_260_776


def _forward_backward(network: torch.nn.Module, size: int) -> None:
    network.train()
    logits, aux_logits = network.forward_with_aux(torch.randn(2, 3, size, size))
    assert logits.shape == aux_logits.shape == (2, 10)
    (logits.sum() + aux_logits.sum()).backward()
    grads = [p.grad for p in network.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", PUBLISHED)
def test_every_published_cell_trains_at_32px(name: str) -> None:
    _forward_backward(NetworkCIFAR(name, C=8, layers=5, num_classes=10, auxiliary=True, drop_path_rate=0.2), 32)


@pytest.mark.parametrize("name", PUBLISHED)
def test_every_published_cell_trains_at_224px(name: str) -> None:
    _forward_backward(NetworkImageNet(name, C=8, layers=5, num_classes=10, auxiliary=True), 224)


def test_uneven_concat_and_five_nodes_set_the_channel_count() -> None:
    network = NetworkCIFAR("AmoebaNet", C=8, layers=3, num_classes=10, auxiliary=False)
    # cells: normal (3 concat nodes), reduce (3), reduce (3) at C = 8, 16, 32
    assert network.num_features == 3 * 32
    assert network.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 96, 8, 8)


def test_drop_path_skips_identities_and_follows_the_rate() -> None:
    genotype = Genotype(
        normal=(("skip_connect", 0), ("skip_connect", 1)), normal_concat=(2,),
        reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1)), reduce_concat=(2,),
    )
    network = NetworkCIFAR(genotype, C=4, layers=3, num_classes=10, auxiliary=False)
    network.set_drop_path_rate(1.0)
    assert all(c.drop_path.drop_prob == 1.0 for c in network.cells)
    cell = network.cells[0]
    s0, s1 = torch.randn(2, 12, 8, 8), torch.randn(2, 12, 8, 8)
    cell.train()
    expected = cell.preprocess0(s0) + cell.preprocess1(s1)
    assert torch.allclose(cell(s0, s1), expected)  # identities are never dropped
    reduce_cell = network.cells[1].train()
    assert torch.count_nonzero(reduce_cell(s0, cell(s0, s1))) == 0  # every pooling edge dropped
    network.set_drop_path_rate(0.0)
    assert torch.count_nonzero(reduce_cell(s0, cell(s0, s1))) > 0


def test_timm_create_model_and_data_config() -> None:
    model = timm.create_model("nas_cifar", genotype="PNASNet", C=16, layers=5, num_classes=7, drop_path_rate=0.1)
    assert isinstance(model, NetworkCIFAR)
    assert model.get_classifier().out_features == 7 and model.drop_path_rate == 0.1
    config = timm.data.resolve_model_data_config(model)
    assert config["input_size"] == (3, 32, 32) and config["mean"][0] == pytest.approx(0.4914, abs=1e-4)
    model.reset_classifier(3)
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 3)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, model.num_features)
    imagenet = timm.create_model("nas_imagenet", C=8, layers=5, num_classes=5)
    assert timm.data.resolve_model_data_config(imagenet)["input_size"] == (3, 224, 224)


def test_wrong_input_shape_gives_a_clear_error() -> None:
    network = NetworkCIFAR("DARTS_V2", C=8, layers=5, num_classes=10)
    with pytest.raises(ValueError, match=r"expects images of shape \(batch, 3, H, W\).*got \(2, 1, 32, 32\)"):
        network(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"H, W >= 32"):
        NetworkImageNet("DARTS_V2", C=8, layers=5, num_classes=10)(torch.randn(1, 3, 16, 16))
