"""What the machine has, and what a block of code used: memory available and at its peak, free disk.

The peak is read from the kernel's high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs``) on Linux, and by sampling the RSS elsewhere; on CUDA from
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path

import torch


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
            self.baseline = high_water_mark()  # the RSS at the reset: both ends read the same counter
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
            self.peak = max(0, high_water_mark() - self.baseline)


def _reset_high_water_mark() -> bool:
    """Linux: reset this process's peak RSS (VmHWM); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return high_water_mark() > 0
    except OSError:
        return False


def high_water_mark() -> int:
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
