"""Constrained argument types: the recipes' parsers (LightningCLI, jsonargparse) refuse a value out of range while
they parse, in one line, before any folder is created or any data loaded.

pydantic's constrained types, which jsonargparse validates and then passes on as plain numbers: its own restricted
types (``jsonargparse.typing.PositiveInt``, ...) reach the module as subclasses of int and float, which the saved
hyperparameters would carry into checkpoints that a weights-only load then refuses. A module whose signature uses
them does without ``from __future__ import annotations``: jsonargparse resolves string annotations without their
constraints.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

__all__ = ["Fraction", "NonNegativeFloat", "NonNegativeInt", "PositiveFloat", "PositiveInt", "Rate"]

Fraction = Annotated[float, Field(ge=0, lt=1)]
"""A share below one, in [0, 1): drop path and dropout probabilities, momentum, label smoothing, a moving average's
decay."""

Rate = Annotated[float, Field(gt=0, le=1)]
"""A factor in (0, 1]: a per-epoch lr decay."""
