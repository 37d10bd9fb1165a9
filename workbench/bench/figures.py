"""Measured figures, each beside its floor and its plain implementation, and how they are timed."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..core import compiled


@dataclass
class Figure:
    """One measured figure, with the floor and the plain implementation it is compared to."""

    name: str
    value: float
    unit: str
    floor: float | None = None
    plain: float | None = None
    higher_is_better: bool = True
    note: str = ""

    def ratio_to_floor(self) -> float | None:
        return _ratio(self.value, self.floor, self.higher_is_better)

    def ratio_to_plain(self) -> float | None:
        # how many times better than the plain implementation
        return None if self.plain is None else _ratio(self.value, self.plain, self.higher_is_better)


def _ratio(ours: float, other: float | None, higher_is_better: bool) -> float | None:
    if other is None or other == 0 or ours == 0:
        return None
    return ours / other if higher_is_better else other / ours


@dataclass
class Report:
    environment: dict
    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        print(row(figure), flush=True)

    def to_dict(self) -> dict:
        return {
            "environment": self.environment,
            "figures": [dict(asdict(f), ratio_to_floor=f.ratio_to_floor(), ratio_to_plain=f.ratio_to_plain()) for f in self.figures],
        }


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}g}"


HEADER = f"{'figure':<44} {'ours':>10} {'unit':<8} {'floor':>10} {'ours/floor':>10} {'plain':>10} {'× plain':>8}  note"


def row(f: Figure) -> str:
    return (
        f"{f.name:<44} {_fmt(f.value):>10} {f.unit:<8} {_fmt(f.floor):>10} {_fmt(f.ratio_to_floor(), 2):>10} "
        f"{_fmt(f.plain):>10} {_fmt(f.ratio_to_plain(), 3):>8}  {f.note}"
    )


def environment(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    env = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "numba_kernels": compiled.available(),
        "python": platform.python_version(),
        "device": str(device),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], object], repeats: int, device: torch.device, before: Callable[[], object] = lambda: None) -> float:
    """Seconds of the fastest of ``repeats`` calls (after one warm-up call), each after an untimed ``before()``."""
    return min(timings({"": fn}, repeats, device, before)[""])


def timings(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device,
            before: Callable[[], object] = lambda: None) -> dict[str, list[float]]:
    """Seconds of each of ``repeats`` calls of every function, the functions taken in turn
    (one warm-up call each first): interleaved, so a burst of other work on the machine
    slows each about as much, and a ratio between them stays fair."""
    for fn in fns.values():
        before()
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            before()
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            seconds[name].append(time.perf_counter() - start)
    return seconds


#: A floor whose repeats' median is more than this many times its best is flagged unreliable.
SPREAD_LIMIT = 1.25


def spread(seconds: list[float]) -> float:
    """Median over best of repeated timings: 1 when every repeat took as long."""
    return float(np.median(seconds)) / min(seconds)


def reliability(seconds: list[float]) -> str:
    """'' for steady timings, else a warning for the figure's note: other work on the machine
    (or a clock that moved) made the repeats disagree, so the best of them may be off too."""
    x = spread(seconds)
    if x <= SPREAD_LIMIT:
        return ""
    return f"UNRELIABLE: repeats spread {x:.2g}x (median/best); rerun on an idle machine"


def copy_bandwidth(device: torch.device, n_bytes: int, repeats: int) -> float:
    """Bytes per second copied from one buffer to another (each byte read once and written once)."""
    src = torch.ones(n_bytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    return n_bytes / best_time(lambda: dst.copy_(src), repeats, device)
