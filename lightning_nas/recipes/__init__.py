"""CLI programs: ``python -m lightning_nas.recipes.<darts|enas|pnas|random|train> fit --config <name or file>``.

The recipe configs ship with the package (``configs/`` is the repository's ``recipes/`` folder): ``--config
darts_digits`` or ``config_path("darts_digits")`` finds one by name wherever the package is installed.
"""

from __future__ import annotations

from pathlib import Path

from lightning_nas.errors import ConfigError

CONFIGS = Path(__file__).with_name("configs")


def config_names() -> list[str]:
    """Names of the shipped recipe configs (``sweeps/train``, ``quality/darts_digits`` for those in subfolders)."""
    return sorted(path.relative_to(CONFIGS).with_suffix("").as_posix() for path in CONFIGS.glob("**/*.yaml"))


def config_path(name: str) -> Path:
    """The file of the shipped recipe config ``name`` (``.yaml`` optional)."""
    path = CONFIGS / Path(name).with_suffix(".yaml")
    if not path.is_file():
        raise ConfigError(f"no recipe config named {name!r}; the package ships {', '.join(config_names())}")
    return path
