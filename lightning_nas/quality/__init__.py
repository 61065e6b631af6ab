"""Search quality you can measure: found architectures against random ones of the same space, equal budgets.

``python -m lightning_nas.quality --strategy darts --config recipes/quality/darts_digits.yaml --seeds 3 --random 8``
"""

from lightning_nas.quality.predictor_eval import PredictorEval
from lightning_nas.quality.report import QualityReport, RetrainBudget, Space, rank_among, summarize
from lightning_nas.quality.target_noise import TargetNoise

__all__ = ["PredictorEval", "QualityReport", "RetrainBudget", "Space", "TargetNoise", "rank_among", "summarize"]
