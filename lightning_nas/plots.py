"""The figures searches and reports draw, as PNG bytes for files and W&B alike.

Drawn on matplotlib's object API (``Figure``), not pyplot: no global figure state to close, no display backend, and
safe in the worker threads W&B and Lightning use.
"""

from __future__ import annotations

import io
import math
import statistics
from random import Random
from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image


def figure_png(figure: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes, cropped to what it draws."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def png_image(png: bytes) -> Image.Image:
    """PNG bytes as the PIL image ``wandb.Image`` takes."""
    return Image.open(io.BytesIO(png))


def alpha_heatmap_png(weights: dict[str, torch.Tensor], op_names: Sequence[str], title: str = "") -> bytes:
    """Heat map of softmax(α) minus the uniform 1/#ops: one panel per cell type, edges as rows, candidate ops as
    columns. Each panel has its own colour scale, symmetric about 0 (white: undecided), so the ops α favours (red)
    and disfavours (blue) show at any stage of a search, however small the differences still are."""
    figure = Figure(figsize=(4.5 * len(weights), 5))
    axes = figure.subplots(1, len(weights), squeeze=False)
    for axis, (cell, values) in zip(axes[0], weights.items()):
        excess = values.detach().float().cpu() - 1.0 / values.shape[-1]
        limit = max(float(excess.abs().max()), 1e-4)  # float rounding of a uniform α stays white
        image = axis.imshow(excess.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        axis.set_title(f"{cell} cell")
        axis.set_xticks(range(len(op_names)), list(op_names), rotation=60, ha="right", fontsize=7)
        axis.set_yticks(range(values.shape[0]))
        axis.set_ylabel("edge")
        figure.colorbar(image, ax=axis, fraction=0.046)
    figure.suptitle(title)
    figure.tight_layout()
    return figure_png(figure, dpi=90)


def predictor_scatter_png(points: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str) -> bytes:
    """PNAS: predicted vs. true accuracy, one point per candidate and one colour per set (name → (predicted, true)),
    with the diagonal where a perfect predictor would lie."""
    figure = Figure(figsize=(4.5, 4.5))
    axis = figure.subplots()
    values: list[float] = []
    for name, (predicted, actual) in points.items():
        axis.scatter(actual, predicted, s=12, label=name)
        values += [*predicted, *actual]
    axis.plot([min(values), max(values)], [min(values), max(values)], color="grey", linewidth=0.8)
    axis.set(xlabel="true held-out accuracy", ylabel="predicted accuracy", title=title)
    axis.legend(fontsize=7)
    return figure_png(figure)


def controller_curves_png(history: Sequence[Mapping[str, float]]) -> bytes:
    """ENAS: mean reward (with the baseline and the derived architecture's accuracy) and controller entropy per
    epoch, side by side."""
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(9, 3.5))
    reward_axis, entropy_axis = figure.subplots(1, 2)
    reward_axis.plot(epochs, [row["reward"] for row in history], marker="o", label="mean reward")
    reward_axis.plot(epochs, [row["baseline"] for row in history], linestyle="--", label="baseline")
    reward_axis.plot(epochs, [row.get("derived_top1", float("nan")) for row in history], marker=".",
                     label="derived, held-out top-1")
    reward_axis.set(xlabel="epoch", ylabel="reward", title="controller reward")
    reward_axis.legend()
    entropy_axis.plot(epochs, [row["entropy"] for row in history], marker="o", color="tab:red")
    entropy_axis.set(xlabel="epoch", ylabel="entropy (nats)", title="controller entropy")
    figure.tight_layout()
    return figure_png(figure, dpi=90)


def found_vs_random_png(found: Sequence[float], random: Sequence[float], title: str) -> bytes:
    """The search-quality report: one point per retrained architecture, the random ones beside the found ones, each
    group's median as a bar."""
    return groups_png({f"random ({len(random)})": random, f"found ({len(found)})": found}, "retrained accuracy", title)


def groups_png(groups: Mapping[str, Sequence[float]], ylabel: str, title: str) -> bytes:
    """One column of points per group (the first grey, the others red), each group's median as a bar."""
    figure = Figure(figsize=(max(4.5, 1.6 * len(groups)), 4.5))
    axis = figure.subplots()
    jitter = Random(0)
    for x, values in enumerate(groups.values()):
        colour = "grey" if x == 0 else "tab:red"
        axis.scatter([x + jitter.uniform(-0.08, 0.08) for _ in values], values, color=colour, s=20)
        axis.hlines(statistics.median(values), x - 0.25, x + 0.25, color=colour)
    axis.set(xticks=range(len(groups)), xticklabels=list(groups), xlim=(-0.6, len(groups) - 0.4), ylabel=ylabel,
             title=title)
    return figure_png(figure)


def best_so_far_figure(curves: Mapping[str, Mapping[str, Sequence[float]]], runs: int, optimum: float | None = None,
                       title: str = "") -> Figure:
    """Best-so-far curves per strategy as the field draws them: the mean over ``runs`` runs with its 95 % interval
    (1.96 standard errors), on a log query axis, the y axis fitted to the curves from the 10th query on (where the
    strategies differ), and the table's best as a dashed line."""
    figure = Figure(figsize=(6.5, 4.5))
    axis = figure.subplots()
    low, high = math.inf, -math.inf
    for name, curve in curves.items():
        mean, sd = np.asarray(curve["mean"]), np.asarray(curve["sd"])
        half = 1.96 * sd / math.sqrt(runs)
        x = np.arange(1, len(mean) + 1)
        axis.plot(x, mean, label=name)
        axis.fill_between(x, mean - half, mean + half, alpha=0.2)
        start = min(9, len(mean) - 1)
        low, high = min(low, float((mean - half)[start:].min())), max(high, float((mean + half)[start:].max()))
    if optimum is not None:
        axis.axhline(optimum, color="black", linestyle="--", linewidth=0.8, label="table best")
        high = max(high, optimum)
    margin = 0.05 * (high - low) or 0.5
    axis.set_ylim(low - margin, high + margin)
    axis.set_xscale("log")
    axis.set_xlabel("queries (log scale)")
    axis.set_ylabel(f"true score of the incumbent: mean, 95 % CI ({runs} runs)")
    axis.set_title(title, fontsize=9)
    axis.legend()
    return figure
