"""Several processes, one run: the pieces of the training loop that know about processes.

The engine is accelerate (``torch.distributed`` underneath). The same ``python -m mir_core
train`` runs in one process, or in N processes started by ``accelerate launch`` (with a
config from ``configs/accelerate/``), ``torchrun`` or ``accelerate.notebook_launcher``:

* every process builds the same inputs (the feature store shards their computation over the
  processes and publishes each entry once: :meth:`FeatureStore.sharded`);
* each global batch of the train split is cut into N per-process shares
  (:class:`ShardedBatches`): the preset's ``batch_size`` stays the global batch, as in the
  papers' one-GPU runs (``batch_per_process=True`` makes it per process instead);
* evaluation batches are dealt to the processes whole (the official fusion's gamma is a
  mean over an evaluation batch, so batches keep their single-process composition) and
  gathered with ``gather_for_metrics``, which drops the padding of the last round; the
  gathered count is checked against the split size;
* every process sees the same gathered dev predictions, so early stopping is decided
  identically everywhere;
* only the main process reads and writes the run folder; its decisions (seed done already,
  stale, lock held by another job) are broadcast, so every process takes the same branch.

Without CUDA the processes run on the CPU with the gloo backend: accelerate needs
``cpu=True`` for that, which :func:`make_accelerator` passes when several processes were
started on a machine without a GPU (``torchrun`` alone sets no accelerate flag).
"""
from __future__ import annotations

import datetime
import os
from typing import Any, Iterator

# Feature encoding happens inside the first collective (the main process computes or
# publishes an entry while the others wait): the collectives' timeout has to outlast a
# one-off encoding of a benchmark (tens of minutes on a CPU), not gloo's 30-minute default.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=3)


def launched_processes() -> int:
    """How many processes the launcher started (1 outside ``torchrun`` / ``accelerate
    launch`` / ``notebook_launcher``)."""
    for var in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        if os.environ.get(var):
            return int(os.environ[var])
    return 1


def make_accelerator():
    """The run's Accelerator: gloo on CPU when several processes were started without a
    GPU; unused parameters tolerated under DDP (an ablated model leaves some branches
    without gradients); long collective timeouts (see COLLECTIVE_TIMEOUT).

    Its ``mixed_precision`` stays 'no': the run's ``precision`` setting is applied by the
    loop (see :mod:`mir_core.training.loop`). A launcher asking for accelerate's own mixed
    precision (``accelerate launch --mixed_precision bf16`` or a config file saying so) is
    refused, so that one setting decides, and says so."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

    asked = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if asked not in ("no", ""):
        from .config import ConfigError
        raise ConfigError(f"the launcher asks for accelerate's mixed_precision {asked!r}: set "
                          "mixed_precision: 'no' in the accelerate config (or drop "
                          "--mixed_precision) and choose it with --set precision=bf16|fp32|auto")

    several = launched_processes() > 1
    cpu = several and not torch.cuda.is_available()
    handlers = [InitProcessGroupKwargs(timeout=COLLECTIVE_TIMEOUT)]
    if several:
        handlers.append(DistributedDataParallelKwargs(find_unused_parameters=True))
    return Accelerator(mixed_precision="no", cpu=cpu, kwargs_handlers=handlers)


def broadcast(accelerator, obj: Any) -> Any:
    """``obj`` of the main process, on every process (itself with one process)."""
    if accelerator is None or accelerator.num_processes == 1:
        return obj
    from accelerate.utils import broadcast_object_list
    return broadcast_object_list([obj], from_process=0)[0]


class ShardedBatches:
    """This process's share of every global batch of ``batches`` (a batch sampler).

    Process ``rank`` of ``world`` takes ``batch[rank::world]``: a batch of similar lengths
    (bucketing) stays similar in every share, and shares differ by at most one sample. A
    batch smaller than ``world`` (only possible for the last one) gives each process one
    of its samples, cycling: a process never gets an empty share, which would leave the
    others waiting for its gradients. DDP averages the processes' mean losses, so a sample
    in a share one smaller weighs 1/(b-1) instead of 1/b of that step: the only difference
    from one process, and only in the split's last, partial batch. Every process iterates
    the same global batches: the inner sampler is seeded identically everywhere.
    """

    def __init__(self, batches, rank: int, world: int):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is outside 0..{world - 1}")
        self.batches, self.rank, self.world = batches, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            batch = list(batch)
            share = batch[self.rank::self.world]
            yield share if share else [batch[self.rank % len(batch)]]

    def __len__(self) -> int:
        return len(self.batches)
