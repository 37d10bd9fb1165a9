"""A small run of the main job in its own process, for the kill tests: ``python -m tests.app.run_worker OUT``.

With ``RUN_WORKER_STEP_SECONDS=S`` every fit step takes S seconds longer (a sleep after it), so that a
test can kill the process between the fit's first checkpoint and its end. With ``RUN_WORKER_KILL_AT=first_record``
the process SIGKILLs itself while it writes its first run.json (its lock taken, the record's temporary made).
"""

import os
import signal
import sys
import time

import torch

from workbench.app.pipeline import run_embedded

#: A fit of 100 steps: two checkpoint saves (FIT_CHECKPOINT_EVERY = 50), the second at its end
SETTINGS = dict(n_examples=40, n_components=3, n_iters_g_only=10, n_iters_joint=90, n_top=5, batch_size=8)


def _slow_steps(seconds: float) -> None:
    import workbench.npeff.lrm as lrm

    real_bar = lrm.progress_bar

    def progress_bar(*args, **kwargs):
        bar = real_bar(*args, **kwargs)
        real_update = bar.update

        def update(n=1):
            time.sleep(seconds)
            return real_update(n)

        bar.update = update
        return bar

    lrm.progress_bar = progress_bar


def _kill_in_first_record() -> None:
    import workbench.app.run_folder as run_folder
    from workbench.store.files import atomic_path

    def write_json(path, obj):
        with atomic_path(path) as tmp:
            tmp.write_text("{")
            os.kill(os.getpid(), signal.SIGKILL)

    run_folder.write_json = write_json


if __name__ == "__main__":
    torch.set_num_threads(1)  # the same reductions in every process
    if os.environ.get("RUN_WORKER_STEP_SECONDS"):
        _slow_steps(float(os.environ["RUN_WORKER_STEP_SECONDS"]))
    if os.environ.get("RUN_WORKER_KILL_AT") == "first_record":
        _kill_in_first_record()
    run_embedded(sys.argv[1], progress=False, **SETTINGS)
