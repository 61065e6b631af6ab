"""Training-free search with proxy training of its best: ``python -m lightning_nas.recipes.zero_cost fit --config
recipes/zero_cost_digits.yaml``.

The black-box recipe (``recipes.blackbox``) with the method fixed to ``zero_cost``: ``--options '{samples: 1000}'``
architectures are drawn and ranked by ``--proxy`` (``params``: the proxy network's parameter count), and the
``--num_samples`` best of them trained and scored; it resumes from its results file and shares its work under
``torchrun``.
"""

from __future__ import annotations

from typing import Any

from lightning_nas.recipes.blackbox import main as blackbox


def main(args: list[str] | None = None) -> Any:
    return blackbox(args, method="zero_cost")


if __name__ == "__main__":
    main()
