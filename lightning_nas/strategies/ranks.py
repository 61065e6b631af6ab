"""How the processes of a multi-process search meet: the launcher's key-value store, not a process group.

Every candidate Trainer, data module and metric then sees a single process, so each rank trains whole candidates on
all the data (results do not depend on the number of ranks) and no collective call waits for a rank that is busy
elsewhere. Any launcher that sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (``torchrun``) works.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

import torch.distributed as dist

STORE_TIMEOUT = timedelta(days=30)
"""How long a rank waits for the others at a barrier: as long as a level of candidates may take."""


class Ranks:
    """This process's rank and the world size, with a barrier and a broadcast from rank 0 over the store."""

    def __init__(self, store: dist.Store | None = None, rank: int = 0, world_size: int = 1) -> None:
        self.store, self.rank, self.world_size = store, rank, world_size

    @classmethod
    def launch(cls, prefix: str) -> Ranks:
        """Meet the other processes of a multi-process launch; a single process when WORLD_SIZE is unset or 1."""
        if int(os.environ.get("WORLD_SIZE", "1")) == 1:
            return cls()
        store, rank, world_size = next(dist.rendezvous("env://", timeout=STORE_TIMEOUT))
        return cls(dist.PrefixStore(prefix, store), rank, world_size)

    def barrier(self, name: str) -> None:
        """Wait until every rank has reached ``name`` (a no-op for a single process)."""
        if self.store is not None:
            self.store.set(f"{name}/{self.rank}", "arrived")
            self.store.wait([f"{name}/{rank}" for rank in range(self.world_size)])

    def from_rank_zero(self, name: str, payload: Any) -> Any:
        """Rank 0's (JSON) ``payload`` on every rank; the other ranks pass None and wait for it."""
        if self.store is None:
            return payload
        if self.rank == 0:
            self.store.set(name, json.dumps(payload))
            return payload
        return json.loads(self.store.get(name))
