"""Cell diagrams drawn with matplotlib (no graphviz binary needed): inputs, numbered nodes, op-labelled edges, output."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lightning_nas.files import write_atomic  # noqa: E402
from lightning_nas.genotypes.genotype import EDGES_PER_NODE, Genotype  # noqa: E402
from lightning_nas.plots import figure_png  # noqa: E402

_BOX = dict(boxstyle="round,pad=0.4", linewidth=1.0)


def draw_cell(genotype: Genotype, cell: str = "normal") -> Figure:
    """Draw the ``normal`` or ``reduce`` cell: c_{k-2}, c_{k-1} on the left, nodes left to right, c_{k} on the right."""
    edges = getattr(genotype, cell)
    concat = getattr(genotype, f"{cell}_concat")
    num_nodes = genotype.num_nodes(cell)
    positions = {0: (0.0, 1.0), 1: (0.0, -1.0)}
    for node in range(num_nodes):
        positions[node + 2] = (1.0 + node, 1.2 if node % 2 == 0 else -1.2)
    output = (num_nodes + 1.2, 0.0)

    figure, axes = plt.subplots(figsize=(2.2 * (num_nodes + 2), 4.0))
    axes.set_axis_off()
    axes.set_xlim(-0.6, output[0] + 0.6)
    axes.set_ylim(-2.0, 2.0)
    for position, (op, source) in enumerate(edges):
        target = 2 + position // EDGES_PER_NODE
        start, end = positions[source], positions[target]
        bend = 0.15 if position % EDGES_PER_NODE else -0.15
        axes.annotate(
            "", xy=end, xytext=start,
            arrowprops=dict(arrowstyle="->", color="0.3", shrinkA=18, shrinkB=18, connectionstyle=f"arc3,rad={bend}"),
        )
        middle = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + bend * 1.5)
        axes.text(*middle, op, fontsize=7, ha="center", va="center", color="darkred",
                  bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.8))
    for node in concat:
        axes.annotate("", xy=output, xytext=positions[node],
                      arrowprops=dict(arrowstyle="->", color="0.6", linestyle="dashed", shrinkA=18, shrinkB=22))
    for index, (x, y) in positions.items():
        label = {0: "c_{k-2}", 1: "c_{k-1}"}.get(index, str(index))
        colour = "lightgreen" if index < 2 else "lightblue"
        axes.text(x, y, label, ha="center", va="center", fontsize=10, bbox=dict(_BOX, facecolor=colour))
    axes.text(*output, "c_{k}", ha="center", va="center", fontsize=10, bbox=dict(_BOX, facecolor="khaki"))
    axes.set_title(f"{cell} cell", fontsize=11)
    figure.tight_layout()
    return figure


def cell_diagram_png(genotype: Genotype, cell: str = "normal") -> bytes:
    """The cell diagram as PNG bytes."""
    figure = draw_cell(genotype, cell)
    png = figure_png(figure)
    plt.close(figure)
    return png


def save_cell_diagram(genotype: Genotype, path: str | os.PathLike, cell: str = "normal") -> str:
    """Write the cell diagram to a PNG file (a path or URL)."""
    return write_atomic(path, cell_diagram_png(genotype, cell))
