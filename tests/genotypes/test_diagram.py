from pathlib import Path

import pytest
from PIL import Image

from lightning_nas.genotypes import resolve_genotype, save_cell_diagram


@pytest.mark.parametrize(("name", "cell"), [("DARTS_V2", "normal"), ("AmoebaNet", "reduce")])
def test_cell_diagram_renders_a_png(name: str, cell: str, tmp_path: Path) -> None:
    path = save_cell_diagram(resolve_genotype(name), tmp_path / f"{name}.png", cell)
    image = Image.open(path)
    assert image.format == "PNG"
    assert image.width > 300 and image.height > 200
    assert len(set(image.convert("L").getdata())) > 10  # drawn, not blank
