"""Black-box strategies measured against a benchmark's ground truth: ``python -m lightning_nas.benchmark``."""
