import json
import math

import pytest

from lightning_nas.spaces.pnas import PNASSpace, one_block_cells
from lightning_nas.strategies.candidates import ResultsFile
from lightning_nas.strategies.pnas_progress import SearchProgress, spearman


def test_spearman_is_nan_below_two_points_and_a_rank_correlation_above():
    assert math.isnan(spearman([0.5], [0.1])) and math.isnan(spearman([], []))
    assert spearman([1, 2, 3], [10, 40, 90]) == pytest.approx(1.0, abs=1e-4)
    assert spearman([1, 2, 3], [0.3, 0.2, 0.1]) == pytest.approx(-1.0, abs=1e-4)


def test_a_level_is_recorded_without_counting_truncated_runs_and_only_the_writer_writes(tmp_path):
    beam = one_block_cells(["identity", "sep_conv_3x3"])[:4]
    accuracy = [0.4, 0.9, 0.6, 0.5]  # the 0.9 stopped early: it is neither the best cell nor a predictor point
    results = {cell: {"accuracy": a, "stopped_early": i == 1} for i, (cell, a) in enumerate(zip(beam, accuracy))}
    predicted = {cell.key(): p for cell, p in zip(beam, [0.1, 0.0, 0.3, 0.2])}
    progress = SearchProgress(tmp_path, ResultsFile(tmp_path / "results.jsonl"), PNASSpace(2).progressive())
    progress.record(2, beam, [], results, predicted, 0.5, write=False)
    assert not any(tmp_path.iterdir())
    progress.record(2, beam, [], results, predicted, 0.5, write=True)
    level = progress.levels[-1]
    assert level["best_cell"] == beam[2].to_list() and level["best_accuracy"] == 0.6 and level["stopped_early"] == 1
    assert level["spearman"] == pytest.approx(1.0, abs=1e-4) and "sample_spearman" not in level
    assert json.loads((tmp_path / "progress.json").read_text()) == progress.levels
    assert (tmp_path / "plots" / "predicted_vs_true_b2.png").is_file()
