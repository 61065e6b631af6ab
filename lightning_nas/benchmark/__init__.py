"""Black-box strategies measured against a benchmark's ground truth: ``python -m lightning_nas.benchmark``."""

import argparse


def space_argument(name: str) -> str:
    """An argparse ``type`` for ``--space``: a registered space or the import path of one of the user's own
    (``spaces.space_class``), refused in argparse's one line otherwise."""
    from lightning_nas.errors import ConfigError
    from lightning_nas.spaces import space_class

    try:
        space_class(name)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return name
