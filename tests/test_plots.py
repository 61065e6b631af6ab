"""The figures: what their axes show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_nas.plots import best_so_far_figure, figure_png

REPORT = Path(__file__).resolve().parents[1] / "reports" / "nb201" / "exact.json"


def test_best_so_far_curves_show_the_region_where_strategies_differ() -> None:
    result = json.loads(REPORT.read_text())
    figure = best_so_far_figure(result["curves"], result["runs"], result["table_best"], title=result["title"])
    axis = figure.axes[0]
    low, high = axis.get_ylim()
    means_at_150 = [curve["mean"][149] for curve in result["curves"].values()]
    assert axis.get_xscale() == "log"
    assert low < min(means_at_150) and max(means_at_150) <= result["table_best"] < high
    assert high - low < 5, "the axis spans the strategies' region, not 65-105"  # the earlier figure spanned 40 points
    band = axis.collections[0].get_paths()[0].vertices  # random search's interval
    at_150 = band[band[:, 0] == 150, 1]
    sd = result["curves"]["random"]["sd"][149]
    assert at_150.max() - at_150.min() == pytest.approx(2 * 1.96 * sd / 10)  # the mean's 95 % interval, not +-1 sd
    assert figure_png(figure)[:4] == b"\x89PNG"
