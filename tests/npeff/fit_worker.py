"""A checkpointed NPEFF fit in its own process, for the cross-process resume test:
``python -m tests.npeff.fit_worker FIT CHECKPOINT OUT``.

FIT is "lrm-primal", "lrm-dual" or "d". With ``FIT_WORKER_KILL=after-save:N`` the process
SIGKILLs itself right after the checkpoint of step N is on disk; with ``FIT_WORKER_KILL=step:N``
in the middle of step N (after the checkpoint before it, so the steps since are lost).
Without it the fit finishes and is saved to OUT.
"""

import os
import signal
import sys

import torch

from workbench.npeff import DNpeff, LrmNpeff
from workbench.npeff.planted import planted_d, planted_lrm

CHECKPOINT_EVERY = 7


def estimator(fit: str):
    if fit == "d":
        return DNpeff(4, n_iters=30, log_every=5, tol=0, progress=False)
    return LrmNpeff(4, n_iters_g_only=10, n_iters_joint=25, log_every=5, tol=0, progress=False,
                    solver=fit.removeprefix("lrm-"))


def pefs(fit: str):
    return (planted_d if fit == "d" else planted_lrm)(80, 60, 4, seed=1).pefs


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_at(when: str) -> None:
    import workbench.npeff.base as base
    import workbench.npeff.d as d
    import workbench.npeff.lrm as lrm
    import workbench.store.checkpoint as checkpoint

    how, step = when.split(":")
    step = int(step)
    if how == "after-save":
        real = checkpoint.FitCheckpoint.save

        def save(self, at, *args, **kwargs):
            real(self, at, *args, **kwargs)
            if at == step:
                _die()

        checkpoint.FitCheckpoint.save = save
        return
    # "step": the progress bar's update ends every step; die inside step N, before its update
    real_bar = base.progress_bar

    def progress_bar(*args, **kwargs):
        bar = real_bar(*args, **kwargs)
        done = [bar.n]
        real_update = bar.update

        def update(n=1):
            if done[0] + 1 == step:
                _die()
            done[0] += n
            return real_update(n)

        bar.update = update
        return bar

    lrm.progress_bar = d.progress_bar = progress_bar


def run(fit: str, checkpoint, out) -> None:
    torch.set_num_threads(1)  # the same reductions in every process
    checkpoint = None if checkpoint == "-" else checkpoint  # "-": an uninterrupted fit, saving nothing on the way
    model = estimator(fit).fit(pefs(fit), checkpoint=checkpoint, checkpoint_every=CHECKPOINT_EVERY)
    model.save(out)


if __name__ == "__main__":
    if os.environ.get("FIT_WORKER_KILL"):
        _kill_at(os.environ["FIT_WORKER_KILL"])
    run(*sys.argv[1:4])
