"""Fit checkpoints: an NPEFF fit saves its state every N steps and resumes from the last one.

A checkpoint is one safetensors file holding the fit's arrays (W, G or H, and the running
products the next step reads), with a JSON header: format and version, what produced it,
the estimator's class and the settings that shape the fit, a fingerprint of the data it
fits, the number of steps done, the loss history and the scalar state. It is rewritten
atomically (temporary file + rename), so a fit killed while saving keeps the previous one.

Everything the next step reads is saved exactly (float32 arrays, floats through JSON's
shortest round-trip repr), so a resumed fit ends where an uninterrupted one does: bit for
bit where the products are deterministic (measured on the CPU here), and within float32
rounding where they are not (CUDA's sparse products, or a BLAS whose rounding depends on
memory alignment), exactly as much as two uninterrupted fits differ there. The device may
differ between the run and its resume.

A fit split across processes (``fit_distributed``) has one checkpoint per process. They save
together, each keeping its previous save, and resume at the latest step all of them hold:
a process killed between two saves leaves the others one save ahead, not more.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.arguments import user_path
from .files import StoreError, producer, read_arrays, read_header, write_arrays
from .formats import FIT_CHECKPOINT

logger = logging.getLogger(__name__)

#: settings that do not change the fit's arithmetic, so a resume may change them
_FREE_SETTINGS = ("progress", "device", "n_iters_transform")


class UnusableCheckpointError(StoreError):
    """A checkpoint this fit cannot resume from: another fit's (estimator, settings or data), or damaged. Its
    owner may replace it (a run replaces the checkpoint in its folder); a failure to write one is not of this kind."""


@dataclass
class Saved:
    """A fit's state as it was after ``step`` steps."""

    step: int
    done: bool
    arrays: dict[str, torch.Tensor]
    scalars: dict[str, float]
    history: dict[str, list[tuple[int, float]]]


class FitCheckpoint:
    """Where and how often one fit saves itself, and what it must match to resume."""

    def __init__(self, path: str | os.PathLike, every: int, estimator, data_fingerprint: str, *,
                 gather_steps: Callable[[list[int]], list[list[int]]] | None = None):
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"checkpoint_every must be a positive integer (steps between saves), got {every!r}")
        self.path = user_path(path)
        # One of several processes' checkpoints (a fit split across ranks, each saving its columns):
        # they save at the same steps, but a kill can stop one between two saves, so each keeps its
        # previous save too and they resume at the latest step all of them hold.
        self.gather_steps = gather_steps
        self.every = every
        self.estimator = type(estimator).__name__
        self.settings = {k: v for k, v in estimator.recorded_params().items() if k not in _FREE_SETTINGS}
        self.data_fingerprint = data_fingerprint
        for path in (self.path, self.previous):
            # saves are written whole (write_arrays): a file there that cannot be read as one is the user's, which
            # a save would move aside and the next save overwrite
            if path.exists():
                try:
                    read_header(path, FIT_CHECKPOINT)
                except StoreError as error:
                    raise UnusableCheckpointError(f"{path} exists and is not a fit checkpoint ({error}); pass another checkpoint "
                                     "path, or delete it first") from None

    def record_solver(self, solver: str) -> None:
        """Record the solver the fit runs ("primal" or "dual") instead of the setting that chose
        it: "auto" and the solver it took are the same fit, and "auto" may take another one
        on another machine."""
        self.settings["solver"] = solver

    def load(self, device: torch.device) -> Saved | None:
        """The saved state, or None when there is no checkpoint yet; UnusableCheckpointError when it belongs
        to another fit or is damaged."""
        if self.gather_steps is not None and not self._agree():
            return None
        if not self.path.exists():
            return None
        try:
            arrays, header = read_arrays(self.path, FIT_CHECKPOINT)
        except StoreError as error:  # damaged (its checksum, a cut file): unusable as any fit's
            raise UnusableCheckpointError(str(error)) from error
        if header.get("estimator") != self.estimator:
            raise UnusableCheckpointError(f"the checkpoint {self.path} is of a {header.get('estimator')} fit, not {self.estimator}; "
                             "use another checkpoint path, or delete it")
        if not isinstance(header.get("settings"), dict):
            raise UnusableCheckpointError(f"the checkpoint {self.path} has a damaged header (no settings); delete it to start over")
        saved_settings, differ = self._settings_of(header)
        if differ:
            changes = ", ".join(f"{k}: {saved_settings.get(k)!r} → {self.settings.get(k)!r}" for k in differ)
            raise UnusableCheckpointError(f"the checkpoint {self.path} was made by a fit with other settings ({changes}); "
                             "fit with its settings to resume it, or delete it / pass another checkpoint path to start over")
        if header.get("data") != self.data_fingerprint:
            raise UnusableCheckpointError(f"the checkpoint {self.path} was made by a fit of other data (other PEFs, or the same PEFs "
                             "pruned or normalised differently); resume with the PEFs it was made from, or delete it / "
                             "pass another checkpoint path to start over")
        try:
            step, done = int(header["step"]), bool(header["done"])
            scalars = {k: float(v) for k, v in header["scalars"].items()}
            history = {k: [(int(i), float(x)) for i, x in v] for k, v in header["history"].items()}
            names = {"LrmNpeff": ("W", "AG", "GG"), "DNpeff": ("W", "H")}[self.estimator]
            # an LRM fit's G is either G itself (solver "primal") or its coordinates P, H ("dual")
            g_saved = self.estimator != "LrmNpeff" or "G" in arrays or {"P", "H"} <= set(arrays)
            if not set(names) <= set(arrays) or not g_saved or not 0 <= step or not all(np.isfinite(a).all() for a in arrays.values()):
                raise ValueError("its arrays or step do not fit the fit")
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise UnusableCheckpointError(f"the checkpoint {self.path} has a damaged header ({err!r}); delete it to start over") from err
        logger.info("resuming %s from %s after step %d", self.estimator, self.path, step)
        return Saved(step, done, {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}, scalars, history)

    @property
    def previous(self) -> Path:
        return self.path.with_name(self.path.name + ".previous")

    def _agree(self) -> bool:
        """Put this process's save of the latest step every process holds at ``path``; False when
        there is none (the fit starts over)."""
        # another fit's checkpoint at the path is refused by load(), naming what differs: nothing is moved over it,
        # and another fit's save beside it (a .previous left by an earlier fit) is never taken for this one's
        foreign = self.path.exists() and not self._same_fit(read_header(self.path, FIT_CHECKPOINT))
        mine = {}
        for path in () if foreign else (self.path, self.previous):
            header = read_header(path, FIT_CHECKPOINT) if path.exists() else {}  # each one a checkpoint: __init__
            if isinstance(header.get("step"), int) and self._same_fit(header):
                mine.setdefault(header["step"], path)
        everyone = self.gather_steps(sorted(mine))  # every process takes part, whatever it holds
        if foreign:
            return True
        common = set(mine).intersection(*map(set, everyone))
        if not common:
            if any(everyone):
                logger.warning("the processes' checkpoints %s hold no step in common: the fit starts over", everyone)
            return False
        step = max(common)
        # the saves ahead of it go, so that the next save keeps this one as the previous: a second kill
        # then still finds a step in common
        for ahead in (s for s in mine if s > step):
            mine[ahead].unlink()
        if mine[step] != self.path:
            os.replace(mine[step], self.path)
        return True

    def _settings_of(self, header: dict) -> tuple[dict, list[str]]:
        """A checkpoint's settings (a dict in its header), and the names of those that differ from this fit's."""
        saved = header["settings"]
        if "solver" in self.settings:  # checkpoints from before the dual solver were made by the primal
            saved = {"solver": "primal", **saved}
        return saved, sorted(k for k in set(saved) | set(self.settings) if saved.get(k) != self.settings.get(k))

    def _same_fit(self, header: dict) -> bool:
        """Whether a checkpoint's header is of this fit: the same estimator, settings and data."""
        return (header.get("estimator") == self.estimator and header.get("data") == self.data_fingerprint
                and isinstance(header.get("settings"), dict) and not self._settings_of(header)[1])

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def save(self, step: int, arrays: dict[str, torch.Tensor], scalars: dict[str, float],
             history: dict[str, list], done: bool = False) -> None:
        header = {
            **FIT_CHECKPOINT.header(),
            "producer": producer(),
            "estimator": self.estimator,
            "settings": self.settings,
            "data": self.data_fingerprint,
            "step": step,
            "done": done,
            "scalars": {k: float(v) for k, v in scalars.items()},
            "history": {k: [(int(i), float(x)) for i, x in v] for k, v in history.items()},
        }
        if self.gather_steps is not None:
            # the processes save together (a fit whose steps need no collective would otherwise run
            # ahead of a killed peer, and keep no save in common with it): a kill leaves them one save apart
            self.gather_steps([step])
            if self.path.exists():
                os.replace(self.path, self.previous)
        write_arrays(self.path, {k: v.detach().cpu().numpy() for k, v in arrays.items()}, header)
