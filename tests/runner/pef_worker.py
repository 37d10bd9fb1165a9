"""A PEF run in its own process, for the SIGKILL test: ``python -m tests.runner.pef_worker OUT``.

With ``PEF_WORKER_HANG_IN_WRITE=K`` the writer of chunk K stops after its temporary file
is on disk and before the rename, so the test can kill it exactly mid-write. With
``PEF_WORKER_KILL_AT=batch:K`` the process SIGKILLs itself as batch K is computed (before its
chunk is handed to the writer); with ``PEF_WORKER_KILL_AT=complete`` after every chunk is on
disk and before the manifest says "complete".
"""

import os
import sys
import time

import torch
from transformers import BertConfig, BertForSequenceClassification

N_EXAMPLES, BATCH_SIZE, N_VALUES = 60, 2, 1500


def model() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=60, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=96, max_position_embeddings=32, num_labels=3)
    return BertForSequenceClassification(config).eval()


def inputs() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 60, (N_EXAMPLES, 24), generator=g)
    mask = torch.ones_like(ids)
    for i in range(N_EXAMPLES):
        mask[i, 24 - (i % 7) :] = 0
    ids = ids * mask
    return {"input_ids": ids, "attention_mask": mask}, torch.randint(0, 3, (N_EXAMPLES,), generator=g)


def run(out) -> None:
    from workbench import write_pefs

    torch.set_num_threads(1)  # the same reductions in every process: results equal bit for bit
    x, y = inputs()
    write_pefs(out, model(), x, y, n_values=N_VALUES, batch_size=BATCH_SIZE, progress=False)


def _hang_in_write(index: int) -> None:
    import workbench.store.files as files

    real = files.save_file

    def save_then_hang(arrays, path, metadata=None):
        real(arrays, path, metadata=metadata)
        if '"chunk": %d,' % index in (metadata or {}).get("header", ""):
            time.sleep(60)

    files.save_file = save_then_hang


def _kill_at(when: str) -> None:
    import signal

    import workbench.runner.checks as checks
    import workbench.runner.run as run_module
    import workbench.store.writer as writer

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if when == "complete":
        writer.PefStoreWriter.complete = die
        return
    batch = int(when.removeprefix("batch:"))
    real = checks.check_chunk_finite

    def check_then_die(chunk, start):  # every computed batch but the probe passes here, in order
        if start == batch * BATCH_SIZE:
            die()
        real(chunk, start)

    run_module.check_chunk_finite = check_then_die


if __name__ == "__main__":
    if "PEF_WORKER_KILL_AT" in os.environ:
        _kill_at(os.environ["PEF_WORKER_KILL_AT"])
    if "PEF_WORKER_HANG_IN_WRITE" in os.environ:
        _hang_in_write(int(os.environ["PEF_WORKER_HANG_IN_WRITE"]))
    run(sys.argv[1])
