"""REINFORCE with a factorised policy (Williams, 1992; the policy-gradient search of Zoph & Le, 2017 and ENAS without
the shared weights): one softmax per decision of the space."""

from __future__ import annotations

import math

import numpy as np

from lightning_nas.errors import check
from lightning_nas.spaces import SearchSpace
from lightning_nas.strategies.evaluators import Evaluations


class FactorisedPolicy:
    """Independent categorical distributions, one per decision (``space.choices()``), as logits padded to the
    largest decision with -inf."""

    def __init__(self, choices: tuple[int, ...]) -> None:
        self.valid = np.arange(max(choices))[None, :] < np.array(choices)[:, None]
        self.logits = np.zeros(self.valid.shape)

    def probabilities(self) -> np.ndarray:
        z = np.where(self.valid, self.logits, -np.inf)
        p = np.exp(z - z.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True)

    def sample(self, rng: np.random.Generator) -> list[int]:
        cumulative = self.probabilities().cumsum(1)
        return (cumulative < rng.random((len(cumulative), 1))).sum(1).clip(max=self.valid.sum(1) - 1).tolist()

    def step(self, decisions: list[int], advantage: float, lr: float, entropy_weight: float) -> None:
        """One gradient ascent step on advantage x log p(decisions) + entropy_weight x entropy."""
        p = self.probabilities()
        chosen = np.zeros_like(p)
        chosen[np.arange(len(decisions)), decisions] = 1.0
        log_p = np.log(np.where(p > 0, p, 1.0))
        entropy = -(p * log_p).sum(1, keepdims=True)
        entropy_gradient = -p * (log_p + entropy)  # d(-Σ p log p)/d logits, per decision
        self.logits += lr * np.where(self.valid, advantage * (chosen - p) + entropy_weight * entropy_gradient, 0.0)


def reinforce(space: SearchSpace, evaluations: Evaluations, seed: int, lr: float = 0.05, baseline_decay: float = 0.9,
              entropy_weight: float = 0.1) -> None:
    """Sample an architecture from the policy, score it, and push the policy towards it in proportion to its
    advantage: the score minus a moving-average baseline, divided by a moving average of the scores' spread (so
    ``lr`` means the same in any table's units); an entropy bonus keeps it exploring. ``lr`` and
    ``entropy_weight`` were chosen on NAS-Bench-201 seeds 0-99 from 0.01-0.05 and 0.01-0.3 (SEARCH_QUALITY.md)."""
    check(0 < lr < math.inf and 0 <= baseline_decay < 1 and 0 <= entropy_weight < math.inf,
          f"reinforce: lr={lr} must be > 0, baseline_decay={baseline_decay} in [0, 1) and entropy_weight="
          f"{entropy_weight} >= 0, all finite")
    rng = np.random.default_rng(seed)
    policy = FactorisedPolicy(space.choices())
    baseline = spread = None
    while not evaluations.done:
        decisions = policy.sample(rng)
        arch = space.decode(decisions)
        if not space.fits(arch):
            evaluations.calls += 1  # a proposal outside the budget costs no query, but counts against endless loops
            continue
        scored = evaluations([arch])
        if not scored:
            return
        reward = scored[0][1]
        if baseline is None or spread is None:
            baseline, spread = reward, 0.0
        advantage = (reward - baseline) / (spread + 1e-8) if spread else 0.0
        spread = baseline_decay * spread + (1 - baseline_decay) * abs(reward - baseline)
        baseline = baseline_decay * baseline + (1 - baseline_decay) * reward
        policy.step(decisions, advantage, lr, entropy_weight)
