"""Know the cost before paying it: the disk, peak memory and time of a PEF run, before it starts.

The run's first batch is computed before anything is written (the *probe*); its PEFs are
not thrown away but become the run's first chunk. From it:

- **disk**: the exact size of the probe's chunk file, per example, times the examples
  still to compute (every example keeps at most ``n_values`` entries, so examples cost
  about the same);
- **peak memory**: the resident memory (RSS) before the probe plus the most the probe
  added, scaled to the batch size and to the longest example (activations grow with both;
  the per-example gradient buffer does not), plus the chunks held in memory;
- **time**: the probe's seconds per example times the examples left (one example is run
  before the probe is timed, so one-off warm-up costs do not inflate it).

:func:`choose_batch_size` picks the batch size from the memory available when the user
gives none. The peak is read from the kernel's high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs``) on Linux, and by sampling the RSS elsewhere; on CUDA from
``torch.cuda.max_memory_allocated``.

Hand-written rather than taken from a library: no profiler predicts the cost of a run
that has not happened; measuring one batch of the real computation is the honest basis.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

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


class NonFinitePefsError(ValueError):
    """The model produced NaN or infinite outputs or gradients."""


def format_bytes(n: float | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"  # pragma: no cover


def format_seconds(s: float | None) -> str:
    if s is None:
        return "unknown"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


# ---------------------------------------------------------------------------------------
# What the machine has
# ---------------------------------------------------------------------------------------


def current_rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def available_memory(device: torch.device | None = None) -> int | None:
    """Bytes that can still be allocated: free GPU memory on CUDA; otherwise the system's
    available memory, or less when a cgroup (container) limit is closer."""
    if device is not None and device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    available = int(psutil.virtual_memory().available)
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            available = min(available, int(limit) - used)
    return available


def free_disk(path: str | os.PathLike) -> int | None:
    """Free bytes on the disk that holds ``path`` (or would, once created)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return int(shutil.disk_usage(path).free)
    except OSError:
        return None


class PeakMemory:
    """Context manager: ``peak`` is the most memory in use during the block, above ``baseline``
    (the memory in use on entry). RSS on the CPU, allocated memory on CUDA."""

    def __init__(self, device: torch.device | None = None):
        self.cuda = device is not None and device.type == "cuda"
        self.device = device
        self.baseline = 0
        self.peak = 0
        self._sampler = None

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
            return self
        if _reset_high_water_mark():
            self.baseline = _high_water_mark()  # the RSS at the reset: both ends read the same counter
        else:
            self.baseline = current_rss()
            self._sampler = _RssSampler()
            self._sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self.peak = max(0, torch.cuda.max_memory_allocated(self.device) - self.baseline)
        elif self._sampler is not None:
            self.peak = max(0, self._sampler.stop() - self.baseline)
        else:
            self.peak = max(0, _high_water_mark() - self.baseline)


def _reset_high_water_mark() -> bool:
    """Linux: reset this process's peak RSS (VmHWM); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _high_water_mark() > 0
    except OSError:
        return False


def _high_water_mark() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class _RssSampler(threading.Thread):
    """Polls the RSS every millisecond (where the kernel keeps no resettable peak)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = current_rss()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.001):
            self.peak = max(self.peak, current_rss())

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, current_rss())


# ---------------------------------------------------------------------------------------
# The probe: the run's first batch, measured
# ---------------------------------------------------------------------------------------


@dataclass
class Probe:
    """One batch computed before the run starts, and what it cost."""

    index: int  # batch index
    start: int  # its first example
    size: int  # examples
    chunk: object  # fisher.PefChunk
    seconds: float
    work_bytes: int  # peak memory above the baseline while it ran
    baseline_bytes: int  # memory in use before it ran (model, inputs, ...)
    length: int  # padded sequence length of the batch (1 for non-sequence inputs)
    max_length: int  # the longest example's length in the whole data set
    chunk_file_bytes: int  # the chunk's file size

    @property
    def n_slots(self) -> int:
        return max(1, int(self.chunk.classes.shape[1]))


def _lengths(inputs) -> np.ndarray | None:
    """Unpadded length of every example, where the inputs say it (an attention mask)."""
    if isinstance(inputs, dict) or hasattr(inputs, "keys"):
        mask = inputs.get("attention_mask")
        if mask is not None and mask.ndim == 2:
            return mask.sum(dim=1).cpu().numpy()
        ids = inputs.get("input_ids")
        if ids is not None and ids.ndim >= 2:
            return np.full(ids.shape[0], ids.shape[1])
    return None


def probe_batch(model, inputs, labels, config, plan, device, batch_index: int, warm_up: bool = True) -> Probe:
    """Compute batch ``batch_index`` of the run (``config.batch_size`` examples) and measure it
    (after one untimed example, unless ``warm_up`` is False because a probe ran already)."""
    from .fisher import iter_pef_chunks, n_inputs
    from .store import FORMAT_VERSION, PEF_FORMAT

    n = n_inputs(inputs)
    start = batch_index * config.batch_size
    stop = min(start + config.batch_size, n)
    part = inputs[start:stop] if isinstance(inputs, torch.Tensor) else {k: v[start:stop] for k, v in inputs.items()}
    one_batch = dataclasses.replace(config, batch_size=stop - start)
    # One example first, untimed: a process's first backward pays one-off costs (thread pools,
    # allocator growth) that would make the first batch look several times slower than the rest.
    if warm_up:
        first = inputs[start : start + 1] if isinstance(inputs, torch.Tensor) else {k: v[start : start + 1] for k, v in inputs.items()}
        next(iter_pef_chunks(model, first, labels[start : start + 1], dataclasses.replace(config, batch_size=1), plan, device))
    with PeakMemory(device) as memory:
        began = time.perf_counter()
        _, size, chunk = next(iter_pef_chunks(model, part, labels[start:stop], one_batch, plan, device))
        seconds = time.perf_counter() - began
    lengths = _lengths(inputs)
    header = {"format": PEF_FORMAT + "/chunk", "format_version": FORMAT_VERSION, "chunk": batch_index,
              "store": "0" * 16, "producer": {"package": "npeff-workbench", "package_version": "0.0.0"}}
    from safetensors.numpy import save

    file_bytes = len(save({k: np.ascontiguousarray(v) for k, v in chunk.arrays().items()}, metadata={"header": json.dumps(header)}))
    return Probe(
        index=batch_index, start=start, size=size, chunk=chunk, seconds=seconds, work_bytes=memory.peak,
        baseline_bytes=memory.baseline,
        length=int(lengths[start:stop].max()) if lengths is not None else 1,
        max_length=int(lengths.max()) if lengths is not None else 1,
        chunk_file_bytes=file_bytes,
    )


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


# ---------------------------------------------------------------------------------------
# The estimate
# ---------------------------------------------------------------------------------------


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
                "fewer examples, or write the store to a larger disk. Nothing was written."
            )
        more = self.peak_memory_bytes - self.memory_in_use_bytes
        if self.available_memory_bytes is not None and more > self.available_memory_bytes:
            raise InsufficientResourcesError(
                f"the PEF run needs about {format_bytes(self.peak_memory_bytes)} of memory ({self.memory_kind}) at its "
                f"peak, {format_bytes(more)} more than now, but only {format_bytes(self.available_memory_bytes)} is "
                f"available. Lower batch_size (now {self.batch_size}; or leave it None to choose one that fits), "
                "select fewer parameters (include=/exclude=), lower n_values"
                + (", or stream to disk with write_pefs instead of compute_pefs" if self.path is None else "")
                + ". Nothing was written."
            )

    def postfix(self) -> str:
        """Short form for the progress bar."""
        disk = f"disk≈{format_bytes(self.disk_bytes)}, " if self.path is not None else ""
        return f"{disk}peak≈{format_bytes(self.peak_memory_bytes)}, est. {format_seconds(self.seconds_left)} left"

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


def estimate_pef_run(probe: Probe, config, plan, n_examples: int, *, n_done: int, out, in_memory: bool,
                     device: torch.device | None) -> PefEstimate:
    """The estimate of a run of ``n_examples`` of which ``n_done`` are on disk; ``probe`` is not yet written."""
    m = plan.layout.n_parameters
    per_example = probe.chunk_file_bytes / probe.size
    manifest_bytes = 200 + len(json.dumps(plan.layout.to_dict()))
    left = n_examples - n_done
    b = config.batch_size
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


# ---------------------------------------------------------------------------------------
# Checks on what the model produced, before it is written
# ---------------------------------------------------------------------------------------


def check_labels(labels: torch.Tensor, n_classes: int) -> None:
    """Every label is a class of the model (or -1, unknown)."""
    bad = (labels < -1) | (labels >= n_classes)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"label {int(labels[i])} of example {i} is out of range for a model with {n_classes} classes "
            f"({int(bad.sum())} labels are); labels must be in 0..{n_classes - 1}, or -1 for unknown. "
            "Check the label encoding, or that the model's classifier head has as many outputs as the task has classes."
        )


def check_chunk_finite(chunk, start: int) -> None:
    """NaN or infinite logits or PEFs stop the run, instead of being written."""
    bad = ~np.isfinite(chunk.logits).all(axis=1) | ~np.isfinite(chunk.frobenius_norms)
    if not np.isfinite(chunk.values).all():
        rows = np.repeat(np.arange(len(chunk.row_offsets) - 1), np.diff(chunk.row_offsets))
        n_slots = max(1, (len(chunk.row_offsets) - 1) // chunk.n_examples)
        bad[np.unique(rows[~np.isfinite(chunk.values)] // n_slots)] = True
    if bad.any():
        examples = (start + np.flatnonzero(bad))[:5].tolist()
        raise NonFinitePefsError(
            f"the model's outputs or gradients are NaN or infinite for {int(bad.sum())} examples (first: {examples}), "
            "so their PEFs would be NaN. Check the model's weights (all(torch.isfinite(p).all() for p in "
            "model.parameters())) and inputs; load it in float32 if it overflows in half precision."
        )


def check_probe(probe: Probe, labels: torch.Tensor) -> None:
    """What the first batch tells about the whole data set: labels in range, finite PEFs."""
    n_classes = int(probe.chunk.logits.shape[1])
    check_labels(labels, n_classes)
    check_chunk_finite(probe.chunk, probe.start)
    zero = int((probe.chunk.frobenius_norms == 0).sum())
    if zero == probe.size:
        logger.warning(
            "every PEF of the first batch is all zero: the selected parameters do not change the model's output "
            "(check include/exclude), or the model is certain (p = 1) of every example"
        )
