import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import Genotype, GenotypeError, published_genotypes, resolve_genotype

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "genotypes.json"
PUBLISHED = ["DARTS_V1", "DARTS_V2", "NASNet", "AmoebaNet", "ENAS", "PNASNet"]


def test_published_cells_match_the_reference_file() -> None:
    genotypes = published_genotypes()
    assert sorted(genotypes) == sorted(PUBLISHED)
    if REFERENCE.exists():
        reference = json.loads(REFERENCE.read_text())
        for name, genotype in genotypes.items():
            assert genotype.to_dict() == reference[name]


@pytest.mark.parametrize("name", PUBLISHED)
def test_round_trips(name: str, tmp_path: Path) -> None:
    genotype = resolve_genotype(name)
    assert Genotype.from_dict(genotype.to_dict()) == genotype
    assert Genotype.from_json(genotype.to_json()) == genotype
    assert Genotype.from_yaml(genotype.to_yaml()) == genotype
    assert Genotype.load(genotype.save(tmp_path / "g.json")) == genotype
    (tmp_path / "g.yaml").write_text(genotype.to_yaml())
    assert resolve_genotype(tmp_path / "g.yaml") == genotype
    assert resolve_genotype(genotype.to_json()) == genotype


def test_survives_a_weights_only_checkpoint(tmp_path: Path) -> None:
    genotype = resolve_genotype("AmoebaNet")
    torch.save({"hyper_parameters": {"genotype": genotype.to_dict()}}, tmp_path / "ckpt.pt")
    loaded = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert resolve_genotype(loaded["hyper_parameters"]["genotype"]) == genotype


def _darts_v2() -> dict:
    return resolve_genotype("DARTS_V2").to_dict()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["normal"].__setitem__(3, ["conv_9x9", 1]), r"normal\[3\] \(node 3\): unknown op 'conv_9x9'"),
        (lambda d: d["reduce"].__setitem__(0, ["max_pool_3x3", 2]), r"reduce\[0\] \(node 2\): input 2 out of range"),
        (lambda d: d["normal"].__setitem__(7, ["skip_connect", -1]), r"normal\[7\] \(node 5\): input -1 out of range"),
        (lambda d: d.__setitem__("normal_concat", [2, 3, 6]), r"normal_concat: node 6 does not exist"),
        (lambda d: d.__setitem__("reduce_concat", [2, 2]), r"reduce_concat: needs distinct"),
        (lambda d: d["normal"].pop(), r"normal: expected 2 edges per node"),
        (lambda d: d.pop("reduce"), r"; it lacks reduce$"),
        (lambda d: d.__setitem__("normal", [["sep_conv_3x3"]] * 8), r"malformed genotype"),
    ],
)
def test_validation_names_the_bad_entry(edit, message: str) -> None:
    data = _darts_v2()
    edit(data)
    with pytest.raises(GenotypeError, match=message):
        Genotype.from_dict(data)


def test_malformed_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"normal": [')
    with pytest.raises(GenotypeError, match=r"broken.json: genotype is not valid JSON"):
        Genotype.load(path)
    with pytest.raises(GenotypeError, match="does not exist"):
        resolve_genotype(tmp_path / "missing.json")
    with pytest.raises(GenotypeError, match="unknown genotype 'DARTS_V3'.*DARTS_V2"):
        resolve_genotype("DARTS_V3")


def test_text_form_reads_like_the_paper() -> None:
    text = resolve_genotype("DARTS_V2").describe()
    assert "normal cell (output = concat of nodes 2, 3, 4, 5):" in text
    assert "  node 2 = sep_conv_3x3(c_{k-2}) + sep_conv_3x3(c_{k-1})" in text
    assert "  node 5 = skip_connect(c_{k-2}) + dil_conv_3x3(node 2)" in text
    assert sum(line.startswith("  node ") for line in text.splitlines()) == 4 + 4


@pytest.mark.parametrize(
    ("name", "text", "shown"),
    [("five.json", "5", "5 (int)"), ("null.json", "null", "null"), ("list.json", "[1, 2]", "[1, 2] (list)"),
     ("five.yaml", "5\n", "5 (int)"), ("empty.yaml", "", "null")],
)
def test_a_file_that_is_not_an_object_is_refused(tmp_path: Path, name: str, text: str, shown: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    expected = f"{path}: a genotype must be an object with normal, normal_concat, reduce and reduce_concat; got {shown}"
    with pytest.raises(GenotypeError) as error:
        resolve_genotype(path)
    assert str(error.value) == expected


@pytest.mark.parametrize(("value", "shown"), [(1.7, "1.7"), (1.0, "1.0"), ("1", "'1'"), (None, "None")])
def test_a_node_index_that_is_not_a_whole_number_is_refused(value, shown: str) -> None:
    data = _darts_v2()
    data["normal"][3][1] = value
    with pytest.raises(GenotypeError) as error:
        Genotype.from_dict(data)
    assert str(error.value).startswith(f"normal[3] input {shown} is not a whole number; write node indices as integers")
    data = _darts_v2()
    data["reduce_concat"][1] = value
    with pytest.raises(GenotypeError, match=rf"^reduce_concat {shown} is not a whole number"):
        Genotype.from_dict(data)


def test_numpy_indices_are_whole_numbers() -> None:
    data = _darts_v2()
    data["normal"][3][1] = np.int64(1)
    assert Genotype.from_dict(data).normal[3] == ("sep_conv_3x3", 1) and type(Genotype.from_dict(data).normal[3][1]) is int


def test_a_directory_is_not_a_genotype_file(tmp_path: Path) -> None:
    search = tmp_path / "search"
    search.mkdir()
    with pytest.raises(GenotypeError) as error:
        resolve_genotype(search)
    example = str(search / "genotype.json")
    assert str(error.value) == f"genotype file {str(search)!r} is a directory; give a file in it, e.g. {example!r}"


def test_genotype_errors_are_config_errors() -> None:
    assert issubclass(GenotypeError, ConfigError) and issubclass(GenotypeError, ValueError)
