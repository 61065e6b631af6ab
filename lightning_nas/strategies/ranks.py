"""How the processes of a multi-process search meet: the launcher's key-value store, not a process group.

Every candidate Trainer, data module and metric then sees a single process, so each rank trains whole candidates on
all the data (results do not depend on the number of ranks) and no collective call waits for a rank that is busy
elsewhere. Any launcher that sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (``torchrun``) works.

Rank 0 publishes a fresh run nonce at start and every key of the run lives under it, so the ranks of a restarted
launch never read a barrier or beam an earlier attempt left in the store. Each rank bumps a heartbeat counter from a
background thread; a rank that waits (at a barrier, for rank 0's payload) polls the store and gives up with an error
naming the silent rank once that rank's counter has not moved for ``timeout`` seconds.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from datetime import timedelta
from typing import Any, Iterator, Sequence

import torch.distributed as dist

POLL_SECONDS = 0.05
"""How often a waiting rank looks at the store."""


class RankDied(RuntimeError):
    """Another rank stopped sending heartbeats: it was killed or hangs, and the search cannot finish without it."""


class Ranks:
    """This process's rank and the world size, with candidate claims, a barrier and a broadcast from rank 0 over the
    store; ``timeout`` bounds how long a rank may stay silent before the others give up."""

    def __init__(self, store: dist.Store | None = None, rank: int = 0, world_size: int = 1,
                 timeout: float = 600.0) -> None:
        self.store, self.rank, self.world_size, self.timeout = store, rank, world_size, timeout
        self._beats: dict[int, tuple[int, float]] = {}
        """Per other rank: its last heartbeat count seen and when (this process's monotonic clock)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, daemon=True, name=f"heartbeat-rank{rank}")
        if store is not None:
            self._thread.start()

    @classmethod
    def launch(cls, prefix: str, timeout: float = 600.0) -> Ranks:
        """Meet the other processes of a multi-process launch, each run under rank 0's nonce; a single process when
        WORLD_SIZE is unset or 1."""
        if int(os.environ.get("WORLD_SIZE", "1")) == 1:
            return cls()
        store, rank, world_size = next(dist.rendezvous("env://", timeout=timedelta(seconds=timeout)))
        attempt = f"{prefix}/attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/nonce"
        if rank == 0:
            store.set(attempt, uuid.uuid4().hex)
        store.wait([attempt], timedelta(seconds=timeout))
        return cls(dist.PrefixStore(f"{prefix}/{store.get(attempt).decode()}", store), rank, world_size, timeout)

    def _heartbeat(self) -> None:
        assert self.store is not None  # the heartbeat runs only with a store
        while not self._stop.is_set():
            try:
                self.store.add(f"heartbeat/{self.rank}", 1)
            except RuntimeError:  # the store is gone (its host ended): the main thread reports it
                return
            self._stop.wait(min(1.0, self.timeout / 10))

    def close(self) -> None:
        """End the run's use of the store: stop the heartbeat; rank 0 (which may host the store) waits, at most
        ``timeout`` seconds, until every rank is done with it."""
        if self.store is None:
            return
        self._stop_heartbeat()
        self.store.set(f"closed/{self.rank}", "closed")
        if self.rank == 0:
            self.store.wait([f"closed/{rank}" for rank in range(self.world_size)], timedelta(seconds=self.timeout))

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)  # bounded: a store call to a host that died may block until its timeout

    def _died(self, message: str) -> RankDied:
        """The error to raise, after stopping the heartbeat: a heartbeat still inside a store call while the
        interpreter exits aborts the process (``terminate called without an active exception``), instead of the
        error ending it with status 1."""
        self._stop_heartbeat()
        return RankDied(message)

    def wait(self, keys: Sequence[str], what: str) -> None:
        """Poll until ``keys`` exist; raise RankDied when another rank's heartbeat stops for ``timeout`` seconds."""
        assert self.store is not None  # only ranks of a multi-process run wait
        while not self._check(keys):
            now = time.monotonic()
            for rank in range(self.world_size):
                if rank == self.rank:
                    continue
                count = self.store.add(f"heartbeat/{rank}", 0)
                last, since = self._beats.get(rank, (-1, now))
                if count != last:
                    self._beats[rank] = (count, now)
                elif now - since > self.timeout:
                    raise self._died(f"rank {self.rank} waited for {what}, but rank {rank} sent no heartbeat for "
                                     f"{self.timeout:.0f} s: it died or hangs; restart the search (finished "
                                     f"candidates are kept)")
            time.sleep(POLL_SECONDS)

    def _check(self, keys: Sequence[str]) -> bool:
        assert self.store is not None  # called by wait
        try:
            return self.store.check(list(keys))
        except RuntimeError as error:
            raise self._died(f"rank {self.rank} lost the launcher's store while waiting: the process that hosts it "
                             f"(rank 0 without torchrun) died; restart the search (finished candidates are kept)"
                             ) from error

    def claim(self, name: str, count: int) -> Iterator[int]:
        """Indices 0..count-1, each handed to whichever rank asks first (an atomic counter in the store), so a fast
        rank takes more of them than a slow one; all of them in order for a single process."""
        if self.store is None:
            yield from range(count)
            return
        while (index := self.store.add(f"{name}/claimed", 1) - 1) < count:
            yield index

    def barrier(self, name: str) -> None:
        """Wait until every rank has reached ``name`` (a no-op for a single process)."""
        if self.store is not None:
            self.store.set(f"{name}/{self.rank}", "arrived")
            self.wait([f"{name}/{rank}" for rank in range(self.world_size)], f"every rank at {name}")

    def from_rank_zero(self, name: str, payload: Any) -> Any:
        """Rank 0's (JSON) ``payload`` on every rank; the other ranks pass None and wait for it."""
        if self.store is None:
            return payload
        if self.rank == 0:
            self.store.set(name, json.dumps(payload))
            return payload
        self.wait([name], f"rank 0's {name}")
        return json.loads(self.store.get(name))
