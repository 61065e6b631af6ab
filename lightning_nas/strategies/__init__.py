"""Strategies: each search (DARTS, ENAS, PNAS) and the final training of a found network is a LightningModule."""
