"""What each rank runs in the distributed tests (see tests.distributed.ranks), and the
problems they share with the single-process references the tests compare against."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from workbench.distributed import fit_distributed, transform_distributed, write_pefs_sharded
from workbench.npeff import DNpeff, LrmNpeff
from workbench.npeff.data import FitData
from workbench.store import write_arrays
from workbench.store.checkpoint import FitCheckpoint

PEF_ARGS = dict(n_values=40, batch_size=3)
N_PEF_EXAMPLES = 20  # 7 batches: uneven shares for 2 and 3 ranks
LRM_SETTINGS = dict(n_components=4, n_iters_g_only=15, n_iters_joint=35, log_every=5, seed=3, progress=False)
D_SETTINGS = dict(n_components=4, n_iters=60, log_every=5, seed=3, progress=False)
# name: (estimator, settings, the planted stores it fits); "lrm" fits by the primal solver here ("auto")
FITS = {
    "lrm": (LrmNpeff, LRM_SETTINGS, "lrm"),
    "lrm_dual": (LrmNpeff, dict(LRM_SETTINGS, solver="dual"), "lrm"),
    "d": (DNpeff, D_SETTINGS, "d"),
}


def estimator(name: str):
    cls, settings, _ = FITS[name]
    return cls(**settings)


class Mlp(nn.Module):
    """A small classifier; with ``dies_on_rank``, that rank's process vanishes (as if
    killed) in its second batch."""

    def __init__(self, dies_on_rank: int | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
        self.dies_on_rank, self.calls = dies_on_rank, 0

    def forward(self, x):
        self.calls += 1
        if self.dies_on_rank == int(os.environ.get("RANK", 0)) and self.calls == 2:
            os._exit(3)
        return self.net(x)


def mlp_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(N_PEF_EXAMPLES, 6, generator=g), torch.randint(0, 3, (N_PEF_EXAMPLES,), generator=g)


def sharded_pefs(folder: Path, rank: int) -> None:
    x, y = mlp_data()
    for kind in ("lrm", "d"):
        write_pefs_sharded(folder / f"pefs_{kind}", Mlp(), x, y, kind=kind, progress=False, **PEF_ARGS)


def fits(folder: Path, rank: int) -> None:
    for name, (_, _, store) in FITS.items():
        fitted = fit_distributed(estimator(name), folder / f"{store}_store")
        if rank == 0:
            fitted.save(folder / f"{name}.safetensors")
        coefficients = transform_distributed(fitted, folder / f"{store}_new")
        write_arrays(folder / f"{name}_rank{rank}.safetensors",
                     {"W": fitted.W_, "components": fitted.components_, "coefficients": coefficients}, {})


def pefs_and_fits(folder: Path, rank: int) -> None:
    sharded_pefs(folder, rank)
    fits(folder, rank)


def pefs_rank_1_dies(folder: Path, rank: int) -> None:
    x, y = mlp_data()
    write_pefs_sharded(folder / "pefs", Mlp(dies_on_rank=1), x, y, progress=False, **PEF_ARGS)


def fit_rank_1_dies(folder: Path, rank: int) -> None:
    if rank == 1:
        real, calls = FitData.times_t, []

        def times_t_then_die(self, M):
            calls.append(1)
            if len(calls) == 10:  # mid-fit, after the first few G steps
                os._exit(3)
            return real(self, M)

        FitData.times_t = times_t_then_die
    fitted = fit_distributed(LrmNpeff(**LRM_SETTINGS), folder / "lrm_store")
    if rank == 0:
        fitted.save(folder / "lrm.safetensors")


CHECKPOINTED = ("lrm_dual", "d")  # a fit of each kind, saved every 10 steps


def checkpointed_fits(folder: Path, rank: int) -> None:
    """The fits with checkpoints; each rank writes down the step it resumed from."""
    real = FitCheckpoint.load

    def load_and_tell(self, device):
        saved = real(self, device)
        (folder / f"resumed_{self.estimator}_rank{rank}.txt").write_text(str(saved.step if saved else None))
        return saved

    FitCheckpoint.load = load_and_tell
    for name in CHECKPOINTED:
        fitted = fit_distributed(estimator(name), folder / f"{FITS[name][2]}_store",
                                 checkpoint=folder / f"{name}.ckpt", checkpoint_every=10)
        if rank == 0:
            fitted.save(folder / f"{name}.safetensors")


def checkpointed_fits_rank_1_dies(folder: Path, rank: int) -> None:
    """Rank 1 is killed as it starts its third save: it holds steps 10 and 20, rank 0 may hold 30 too."""
    if rank == 1:
        real, saves = FitCheckpoint.save, []

        def save_then_die(self, step, *args, **kwargs):
            saves.append(step)
            if len(saves) == 3:
                os._exit(3)
            return real(self, step, *args, **kwargs)

        FitCheckpoint.save = save_then_die
    fit_distributed(estimator(CHECKPOINTED[0]), folder / f"{FITS[CHECKPOINTED[0]][2]}_store",
                    checkpoint=folder / f"{CHECKPOINTED[0]}.ckpt", checkpoint_every=10)


def pefs_lrm(folder: Path, rank: int) -> None:
    x, y = mlp_data()
    write_pefs_sharded(folder / "pefs", Mlp(), x, y, progress=False, **PEF_ARGS)


def pefs_rank_1_other_labels(folder: Path, rank: int) -> None:
    x, y = mlp_data()
    if rank == 1:
        y = (y + 1) % 3
    write_pefs_sharded(folder / "pefs", Mlp(), x, y, progress=False, **PEF_ARGS)


def threads(folder: Path, rank: int) -> None:
    """Records the torch threads the rank was given, and the ranks it counted on this machine."""
    from workbench.distributed.group import ranks_on_this_host

    (folder / f"threads{rank}.txt").write_text(f"{torch.get_num_threads()} {ranks_on_this_host()}")


def transform_rank_1_other_decomposition(folder: Path, rank: int) -> None:
    """Rank 1 transforms with another fit (another seed) of the same store."""
    fitted = LrmNpeff.load(folder / ("lrm.safetensors" if rank == 0 else "lrm_seed1.safetensors"))
    transform_distributed(fitted, folder / "lrm_new")


def fit_rank_1_other_checkpoint_every(folder: Path, rank: int) -> None:
    fit_distributed(estimator("lrm"), folder / "lrm_store", checkpoint=folder / "fit.ckpt",
                    checkpoint_every=5 if rank == 0 else 7)


def pefs_rank_1_own_folder(folder: Path, rank: int) -> None:
    """Each rank's store folder is its own (a local folder per node)."""
    x, y = mlp_data()
    write_pefs_sharded(folder / f"node{rank}" / "pefs", Mlp(), x, y, progress=False, **PEF_ARGS)
