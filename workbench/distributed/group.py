"""The process group of a job torchrun started, and the few collectives NPEFF needs.

Backends: NCCL when the device is CUDA (each rank uses ``cuda:LOCAL_RANK``), gloo on the
CPU. Every collective has a timeout, and a failed one (a rank died, the network went)
raises :class:`DistributedError` on the ranks still alive. Run with one process (no
torchrun), every collective is the identity.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..core.device import resolve_device

logger = logging.getLogger(__name__)

#: How long a collective waits for the other ranks before the job fails. Long enough for
#: the slowest rank's share of the PEFs between two synchronisations; set it lower in
#: tests so that a dead peer cannot hang them.
DEFAULT_TIMEOUT = timedelta(minutes=30)


class DistributedError(RuntimeError):
    """Another rank of the job stopped, could not be reached, or disagrees with this one."""


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the job."""

    rank: int
    world_size: int
    device: torch.device  # this rank's compute device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA devices, gloo for the CPU."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def rank_device(device: str | torch.device | None = None) -> torch.device:
    """This rank's device: with CUDA, the GPU of its LOCAL_RANK (as torchrun numbers them)."""
    resolved = resolve_device(device)
    if resolved.type == "cuda" and resolved.index is None and launched_by_torchrun():
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        resolve_device(resolved)  # a clear error where this node has fewer GPUs than ranks
    return resolved


def current_ranks(device: str | torch.device | None = None) -> Ranks:
    """This process's place in the initialised process group (rank 0 of 1 without one).

    ``device`` None: the group's kind of device (CUDA for NCCL, the CPU for gloo)."""
    if dist.is_available() and dist.is_initialized():
        if device is None:
            device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        return Ranks(dist.get_rank(), dist.get_world_size(), rank_device(device))
    return Ranks(0, 1, resolve_device(device))


@contextlib.contextmanager
def process_group(device: str | torch.device | None = None, timeout: timedelta = DEFAULT_TIMEOUT) -> Iterator[Ranks]:
    """Join the job torchrun started (it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
    MASTER_PORT), with NCCL for CUDA and gloo otherwise; leave it on exit.

    Without torchrun's variables this is a job of one process and no group is made. A
    group that is already initialised is used as it is (and left to its owner).
    """
    if dist.is_available() and dist.is_initialized():
        yield current_ranks(device)
        return
    if not launched_by_torchrun():
        yield Ranks(0, 1, resolve_device(device))
        return
    resolved = rank_device(device)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    backend = backend_for(resolved)
    try:
        dist.init_process_group(backend, timeout=timeout, device_id=resolved if backend == "nccl" else None)
    except RuntimeError as err:  # torch's DistStoreError / DistNetworkError, raw, with its traceback
        where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        raise DistributedError(
            f"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}: joining the job at {where} failed within "
            f"{timeout.total_seconds():g} s ({str(err).splitlines()[0][:300]}): another rank was not started, stopped "
            "before it joined, or cannot reach that address. Start every rank with the same MASTER_ADDR, MASTER_PORT "
            "and WORLD_SIZE (torchrun sets them); see the other ranks' logs, then rerun the same command."
        ) from err
    threads = torch.get_num_threads()
    try:
        ranks = current_ranks(resolved)
        share_cores()
        logger.info("rank %d of %d on %s (%s), %d torch threads", ranks.rank, ranks.world_size, resolved, backend,
                    torch.get_num_threads())
        yield ranks
    finally:
        torch.set_num_threads(threads)
        dist.destroy_process_group()


def threads_per_rank(cores: int, ranks_on_host: int) -> int:
    """Torch threads for each of ``ranks_on_host`` ranks sharing ``cores``: an equal share, at least one."""
    return max(1, cores // max(1, ranks_on_host))


def usable_cores() -> int:
    """The cores this process may run on (its affinity, where the system says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def ranks_on_this_host() -> int:
    """How many ranks of the job run on this machine: torchrun's LOCAL_WORLD_SIZE, or more where
    several torchrun "nodes" share one machine (each says 1); counted by the host's name."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if not _in_group():
        return local
    host = int.from_bytes(hashlib.sha256(socket.gethostname().encode()).digest()[:7], "little")
    hosts = [torch.zeros(1, dtype=torch.int64, device=_comm_device()) for _ in range(dist.get_world_size())]
    with _peers("counting the ranks on each machine"):
        dist.all_gather(hosts, torch.tensor([host], dtype=torch.int64, device=_comm_device()))
    return max(local, sum(int(h.item()) == host for h in hosts))


def share_cores() -> None:
    """Give this rank torch threads for its share of the machine's cores.

    Each rank would otherwise take torch's default, one thread per core, and ranks on one
    machine oversubscribe it: two ranks on two cores fitted the demo's store 100× slower
    (137 s against 1.4 s with one thread each; benchmarks/README.md). An explicit
    OMP_NUM_THREADS (torchrun sets 1 where it starts several processes per node) is kept."""
    sharing = ranks_on_this_host()  # a collective: every rank takes part, whatever its environment
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(threads_per_rank(usable_cores(), sharing))


def _in_group() -> bool:
    """Collectives run whenever a group exists, even of one rank (so one GPU exercises NCCL)."""
    return dist.is_available() and dist.is_initialized()


def _comm_device() -> torch.device:
    """NCCL moves only CUDA tensors; gloo CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@contextlib.contextmanager
def _peers(what: str):
    """Turns a failed collective into a DistributedError that says what it means."""
    try:
        yield
    except DistributedError:
        raise
    except RuntimeError as err:  # gloo and NCCL raise RuntimeError (or its subclass DistError)
        raise DistributedError(
            f"rank {dist.get_rank()} of {dist.get_world_size()}: {what} failed because another rank of the job "
            f"stopped, timed out or could not be reached ({str(err).splitlines()[0][:300]}). Nothing was marked "
            "complete; what was saved before it (the store's chunks, fit steps under --checkpoint) is kept, and "
            "rerunning the same command resumes from it: see the other ranks' logs for the first error, then rerun."
        ) from err


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Σ over ranks of ``t`` (may overwrite ``t``); ``t`` itself with one process."""
    if not _in_group():
        return t
    comm = _comm_device()
    moved = t.to(comm).contiguous()
    with _peers("summing over ranks"):
        dist.all_reduce(moved)
    return moved.to(t.device)


def barrier(what: str) -> None:
    if _in_group():
        with _peers(what):
            # An all-reduce rather than dist.barrier(): it honours the group's timeout on
            # both backends, and NCCL's barrier guesses the device.
            dist.all_reduce(torch.zeros(1, device=_comm_device()))


def all_gather_columns(local: torch.Tensor, bounds: list[tuple[int, int]]) -> torch.Tensor:
    """The (r, n) matrix whose columns bounds[k] are rank k's ``local`` (r, n_k)."""
    if not _in_group():
        return local
    widest = max(stop - start for start, stop in bounds)
    comm = _comm_device()
    padded = torch.zeros((local.shape[0], widest), dtype=local.dtype, device=comm)
    padded[:, : local.shape[1]] = local.to(comm)
    parts = [torch.empty_like(padded) for _ in bounds]
    with _peers("gathering the components"):
        dist.all_gather(parts, padded)
    return torch.cat([p[:, : stop - start] for p, (start, stop) in zip(parts, bounds)], dim=1).to(local.device)


def all_gather_steps(steps: list[int]) -> list[list[int]]:
    """Every rank's fit-checkpoint steps (each holds at most two: its last save and the one before)."""
    if not _in_group():
        return [list(steps)]
    if len(steps) > 2:
        raise ValueError(f"at most two saved steps per rank, got {steps}")
    local = torch.tensor(list(steps) + [-1] * (2 - len(steps)), dtype=torch.int64, device=_comm_device())
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    with _peers("comparing the fit checkpoints of the ranks"):
        dist.all_gather(parts, local)
    return [[int(x) for x in part.tolist() if x >= 0] for part in parts]


def check_same_on_all_ranks(text: str, what: str) -> None:
    """Refuse to go on where the ranks hold different ``text`` (e.g. other model weights)."""
    if not _in_group():
        return
    digest = torch.tensor(list(hashlib.sha256(text.encode()).digest()), dtype=torch.uint8, device=_comm_device())
    digests = [torch.empty_like(digest) for _ in range(dist.get_world_size())]
    with _peers(f"comparing {what} across ranks"):
        dist.all_gather(digests, digest)
    differ = [k for k, d in enumerate(digests) if not torch.equal(d, digests[0])]
    if differ:
        raise DistributedError(
            f"ranks {differ} hold other {what} than rank 0: every rank must be started with the same model, "
            "data, seed and arguments"
        )
