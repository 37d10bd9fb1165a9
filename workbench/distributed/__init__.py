"""NPEFF on several processes (GPUs, nodes) with ``torch.distributed``, launched by ``torchrun``.

Three jobs, each run by every process ("rank") of the job with the same arguments:

- :func:`write_pefs_sharded` (:mod:`.pefs`): rank r computes the batches b with
  b % world_size == r and writes them as chunks of one ordinary PEF store (a folder every
  rank can write to); rank 0 writes the manifest first and marks the store complete only
  once every chunk is on disk. :func:`workbench.load_pefs` then reads the whole set in
  example order. A resumed run (same arguments, any number of ranks) computes only the
  missing chunks.
- :func:`fit_distributed` (:mod:`.fit`): the parameter columns are split across ranks
  (method notes, section 3): each rank reads only its columns of X from the store and
  holds its columns of G (or H); the products that sum over columns (X Gᵀ, G Gᵀ, norms)
  are all-reduced, and W is replicated.
- :func:`transform_distributed`: coefficients of a store's examples with the components
  fixed, split the same way.

:mod:`.group` joins the job and runs the collectives: NCCL when the device is CUDA, gloo
on the CPU, each with a timeout, a failed one raising :class:`DistributedError` on the ranks
still alive; nothing is then marked complete, and what was saved before (chunks, fit
checkpoints) is kept for the rerun. Run with one process (no torchrun),
every function works unchanged.

Why not DistributedDataParallel: NPEFF is not a gradient-descent training loop over
examples; its fit splits the parameter axis, which needs only all-reduce and all-gather.
"""

from .fit import ColumnShard, fit_distributed, load_column_shard, split_columns, transform_distributed
from .group import (
    DEFAULT_TIMEOUT,
    DistributedError,
    Ranks,
    all_reduce_sum,
    backend_for,
    barrier,
    check_same_on_all_ranks,
    current_ranks,
    process_group,
)
from .pefs import write_pefs_sharded

__all__ = [
    "DEFAULT_TIMEOUT",
    "ColumnShard",
    "DistributedError",
    "Ranks",
    "all_reduce_sum",
    "backend_for",
    "barrier",
    "check_same_on_all_ranks",
    "current_ranks",
    "fit_distributed",
    "load_column_shard",
    "process_group",
    "split_columns",
    "transform_distributed",
    "write_pefs_sharded",
]
