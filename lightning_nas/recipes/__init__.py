"""CLI programs: ``python -m lightning_nas.recipes.<darts|enas|pnas|train> fit --config recipes/<file>.yaml``."""
