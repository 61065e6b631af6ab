"""Candidate operations and the registry every cell looks them up in."""

from lightning_nas.ops.primitives import (
    DARTS_PRIMITIVES,
    ENAS_MACRO_OPS,
    ENAS_MICRO_OPS,
    IDENTITY_OPS,
    NB201_OPS,
    OPS,
    POOLING_OPS,
    PNAS_OPS,
    DilConv,
    FactorizedReduce,
    ReLUConvBN,
    SepConv,
    Zero,
    after_leading_relu,
    check_op_name,
    create_op,
)

__all__ = [
    "DARTS_PRIMITIVES",
    "ENAS_MACRO_OPS",
    "ENAS_MICRO_OPS",
    "IDENTITY_OPS",
    "NB201_OPS",
    "OPS",
    "POOLING_OPS",
    "PNAS_OPS",
    "DilConv",
    "FactorizedReduce",
    "ReLUConvBN",
    "SepConv",
    "Zero",
    "after_leading_relu",
    "check_op_name",
    "create_op",
]
