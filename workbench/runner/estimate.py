"""Know the cost before paying it: the disk, peak memory and time of a PEF run, before it starts.

The run's first batch is computed before anything is written (the *probe*, :func:`probe`);
its PEFs are not thrown away but become the run's first chunk. From it:

- **disk**: the exact size of the probe's chunk file, per example, times the examples
  still to compute (every example keeps at most ``n_values`` entries, so examples cost
  about the same);
- **peak memory**: the resident memory (RSS) before the probe plus the most the probe
  added, scaled to the batch size and to the longest example (activations grow with both;
  the per-example gradient buffer does not), plus the chunks held in memory;
- **time**: the probe's seconds per example times the examples left (one example is run
  before the probe is timed, so one-off warm-up costs do not inflate it).

:func:`choose_batch_size` picks the batch size from the memory available when the user
gives none (:mod:`.resources` measures the machine).

Hand-written rather than taken from a library: no profiler predicts the cost of a run
that has not happened; measuring one batch of the real computation is the honest basis.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass

import torch

from ..core.chunks import PefChunk
from ..core.params import ParameterLayout
from ..fisher import PefConfig
from .resources import available_memory, format_bytes, format_seconds, free_disk

logger = logging.getLogger(__name__)

#: examples in the probe that measures a run whose batch size is to be chosen
PROBE_BATCH = 8
#: the largest batch size chosen automatically: bigger batches barely speed up the per-example
#: work, which dominates, and make every chunk (the unit of resuming) longer
MAX_AUTO_BATCH = 32
#: share of the available memory an automatically chosen batch may use
MEMORY_SHARE = 0.5
#: the batch-independent working memory, in copies of one example's (slots, n_parameters)
#: float32 gradient matrix: the buffer, its √p-scaled copy, float64 copies for the norm, |.| and
#: the selection's temporaries
ASSEMBLY_COPIES = 8


class InsufficientResourcesError(RuntimeError):
    """The disk or memory will not hold the run; the message gives the numbers and what to change."""


@dataclass
class Probe:
    """One batch computed before the run starts, and what it cost."""

    index: int  # batch index
    start: int  # its first example
    size: int  # examples
    chunk: PefChunk
    seconds: float
    work_bytes: int  # peak memory above the baseline while it ran
    baseline_bytes: int  # memory in use before it ran (model, inputs, ...)
    length: int  # padded sequence length of the batch (1 for non-sequence inputs)
    max_length: int  # the longest example's length in the whole data set
    chunk_file_bytes: int  # the chunk's file size

    @property
    def n_slots(self) -> int:
        return max(1, int(self.chunk.classes.shape[1]))


def _fixed_work(probe: Probe, n_parameters: int) -> float:
    """The part of the probe's working memory that does not grow with the batch."""
    return min(float(probe.work_bytes), ASSEMBLY_COPIES * 4.0 * probe.n_slots * n_parameters)


def _work(probe: Probe, n_parameters: int, batch_size: int, length: int) -> float:
    """Working memory of a batch of ``batch_size`` examples padded to ``length``."""
    fixed = _fixed_work(probe, n_parameters)
    per_example = (probe.work_bytes - fixed) / probe.size * (length / max(probe.length, 1))
    return fixed + per_example * batch_size


def choose_batch_size(probe: Probe, n_examples: int, device: torch.device | None, n_parameters: int) -> int:
    """The largest batch (at most MAX_AUTO_BATCH) whose working memory, at the longest example,
    fits in MEMORY_SHARE of the memory available."""
    available = available_memory(device)
    limit = min(MAX_AUTO_BATCH, n_examples)
    if available is None:
        return min(PROBE_BATCH, limit)
    budget = MEMORY_SHARE * available
    fixed = _fixed_work(probe, n_parameters)
    per_example = max(_work(probe, n_parameters, 1, probe.max_length) - fixed, 1.0) + 2 * probe.chunk_file_bytes / probe.size
    chosen = int(max(1, min(limit, (budget - fixed) // per_example)))
    logger.info("batch size %d chosen from %s available memory", chosen, format_bytes(available))
    return chosen


@dataclass
class PefEstimate:
    """What a PEF run will cost, estimated from its first batch. Byte counts are bytes."""

    n_examples: int
    n_done: int  # examples already on disk (a resumed run)
    n_parameters: int
    n_slots: int
    batch_size: int
    bytes_per_example: float  # on disk
    disk_bytes: int  # the whole store
    disk_bytes_left: int  # still to write
    peak_memory_bytes: int  # RSS (CPU) or allocated memory (CUDA) at the run's peak
    memory_in_use_bytes: int  # before the run
    seconds_per_example: float
    seconds_left: float  # after the probe
    free_disk_bytes: int | None
    available_memory_bytes: int | None
    memory_kind: str  # "RSS" or "CUDA"
    path: str | None  # the store folder; None for a run held in memory
    made_at: float = dataclasses.field(default_factory=time.perf_counter)  # when (perf_counter), to check seconds_left

    def check(self) -> None:
        """Raise InsufficientResourcesError when the disk or memory will not hold the run."""
        if self.path is not None and self.free_disk_bytes is not None and self.disk_bytes_left > self.free_disk_bytes:
            raise InsufficientResourcesError(
                f"the PEF store needs about {format_bytes(self.disk_bytes_left)} more on the disk of {self.path} "
                f"({self.n_examples - self.n_done} examples × {format_bytes(self.bytes_per_example)}), but only "
                f"{format_bytes(self.free_disk_bytes)} is free. Lower n_values (entries kept per example), compute "
                "fewer examples, or write the store to a larger disk. The store was left as it was."
            )
        more = self.peak_memory_bytes - self.memory_in_use_bytes
        if self.available_memory_bytes is not None and more > self.available_memory_bytes:
            raise InsufficientResourcesError(
                f"the PEF run needs about {format_bytes(self.peak_memory_bytes)} of memory ({self.memory_kind}) at its "
                f"peak, {format_bytes(more)} more than now, but only {format_bytes(self.available_memory_bytes)} is "
                f"available. Lower batch_size (now {self.batch_size}; or leave it None to choose one that fits), "
                "select fewer parameters (include=/exclude=), lower n_values"
                + (", or stream to disk with write_pefs instead of compute_pefs" if self.path is None else "")
                + (". Nothing was written." if self.path is None else ". The store was left as it was.")
            )

    def postfix(self, n_left: int | None = None) -> str:
        """Short form for the progress bar; with ``n_left`` (examples still to run) the time left counts
        down at the probe's rate, so the bar's estimate moves as the run does."""
        disk = f"disk≈{format_bytes(self.disk_bytes)}, " if self.path is not None else ""
        seconds = self.seconds_left if n_left is None else self.seconds_per_example * max(int(n_left), 0)
        return f"{disk}peak≈{format_bytes(self.peak_memory_bytes)}, est. {format_seconds(seconds)} left"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        disk = (f"disk ≈ {format_bytes(self.disk_bytes)} ({format_bytes(self.free_disk_bytes)} free); "
                if self.path is not None else "")
        return (
            f"{self.n_examples} examples ({self.n_done} done) in batches of {self.batch_size}: {disk}"
            f"peak memory ≈ {format_bytes(self.peak_memory_bytes)} {self.memory_kind} "
            f"({format_bytes(self.available_memory_bytes)} available); "
            f"about {format_seconds(self.seconds_left)} left at {self.seconds_per_example * 1000:.3g} ms per example"
        )


def estimate_pef_run(probe: Probe, config: PefConfig, layout: ParameterLayout, n_examples: int, *, n_done: int, out,
                     in_memory: bool, device: torch.device | None) -> PefEstimate:
    """The estimate of a run of ``n_examples`` of which ``n_done`` are on disk; ``probe`` is not yet written."""
    m = layout.n_parameters
    per_example = probe.chunk_file_bytes / probe.size
    left = n_examples - n_done
    b = config.batch_size
    # the manifest: its layout (indented, as write_json writes it), its records, and a chunk's checksum per batch
    manifest_bytes = 600 + len(json.dumps(layout.to_dict(), indent=1)) + 70 * -(-n_examples // b)
    cuda = device is not None and device.type == "cuda"
    held = 2 * per_example * b  # the chunk being assembled and its contiguous copy for the file
    if in_memory:  # every chunk, then their concatenation and the sparse matrix built from it
        held += 3 * per_example * n_examples
    # on CUDA the peak is the GPU's; finished chunks live in host memory
    peak = probe.baseline_bytes + _work(probe, m, b, probe.max_length) + (0 if cuda else held)
    seconds = probe.seconds / probe.size
    return PefEstimate(
        n_examples=n_examples,
        n_done=n_done,
        n_parameters=m,
        n_slots=probe.n_slots,
        batch_size=b,
        bytes_per_example=per_example,
        disk_bytes=int(per_example * n_examples + manifest_bytes),
        disk_bytes_left=int(per_example * left + manifest_bytes),
        peak_memory_bytes=int(peak),
        memory_in_use_bytes=int(probe.baseline_bytes),
        seconds_per_example=seconds,
        seconds_left=seconds * max(left - probe.size, 0),
        free_disk_bytes=None if out is None else free_disk(out),
        available_memory_bytes=available_memory(device),
        memory_kind="CUDA" if cuda else "RSS",
        path=None if out is None else str(out),
    )
