"""Count what a step asks of the device, on any device (the CPU included): the operators it dispatches (about the
kernels a GPU would launch) and the host synchronisations (a value read back to the host, which stalls the launch
queue and cannot be captured in a CUDA graph)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

SYNCHRONISING = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default}
"""Operators that read a value on the host: ``.item()``, ``float()`` / ``bool()`` of a tensor, and the ones whose
output shape depends on the values."""

NO_KERNEL = {aten.empty.memory_format, aten.empty_strided.default, aten.empty_like.default, aten.detach.default}
"""Operators that allocate or alias without running a kernel (views are recognised by their schema)."""

HOST_READS = {torch.Tensor.tolist, torch.Tensor.numpy}
"""Tensor methods that copy to the host without going through the dispatcher."""


def _is_device_to_host(func: Any, args: tuple, kwargs: dict[str, Any]) -> bool:
    """A copy from an accelerator to the CPU (``.cpu()``, ``.to("cpu")``, ``cpu_tensor.copy_(cuda_tensor)``)."""
    if func is aten._to_copy.default:
        device = kwargs.get("device")
        return device is not None and torch.device(device).type == "cpu" and args[0].device.type != "cpu"
    if func is aten.copy_.default:
        return args[0].device.type == "cpu" and args[1].device.type != "cpu"
    return False


def _is_boolean_index(func: Any, args: tuple) -> bool:
    """``x[mask]``: the output's size is the mask's count of True, read on the host."""
    return func is aten.index.Tensor and any(i is not None and i.dtype == torch.bool for i in args[1])


class _HostReads(TorchFunctionMode):
    def __init__(self, syncs: Counter[str]) -> None:
        super().__init__()
        self.syncs = syncs

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict[str, Any] | None = None) -> Any:
        if func in HOST_READS:
            self.syncs[func.__name__] += 1
        return func(*args, **(kwargs or {}))


class DispatchCount(TorchDispatchMode):
    """``with DispatchCount() as count: step()``: ``count.kernels`` operators that run a kernel (views and
    allocations excluded; a foreach operator counts once) and ``count.syncs``, host synchronisations by operator."""

    def __init__(self) -> None:
        super().__init__()
        self.kernels = 0
        self.syncs: Counter[str] = Counter()
        self._host_reads = _HostReads(self.syncs)

    def __enter__(self) -> DispatchCount:
        self._host_reads.__enter__()
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        self._host_reads.__exit__(*exc)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if func in SYNCHRONISING or _is_device_to_host(func, args, kwargs) or _is_boolean_index(func, args):
            self.syncs[str(func.overloadpacket.__name__)] += 1
        if not func.is_view and func not in NO_KERNEL and func not in SYNCHRONISING:
            self.kernels += 1
        return func(*args, **kwargs)

    @property
    def total_syncs(self) -> int:
        return sum(self.syncs.values())
