"""One rank writes a sharded PEF store on CUDA through NCCL and checks it against one process.

Started by benchmarks/nccl_one_rank.sh with ``torchrun --standalone --nproc_per_node 1``.
"""

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from workbench.distributed import process_group, write_pefs_sharded
from workbench import compute_pefs


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.Tanh(), nn.Linear(256, 10))
    x, y = torch.randn(512, 64), torch.randint(0, 10, (512,))
    with process_group("cuda") as ranks, tempfile.TemporaryDirectory() as tmp:
        assert torch.distributed.get_backend() == "nccl", torch.distributed.get_backend()
        started = time.perf_counter()
        store = write_pefs_sharded(Path(tmp) / "pefs", model, x, y, n_values=2048, batch_size=64, progress=False)
        seconds = time.perf_counter() - started
        reference = compute_pefs(model.cpu(), x, y, n_values=2048, batch_size=64, device="cpu", progress=False)
        sharded = store.load()
        # the top-2048 choice may differ where GPU and CPU round near-ties apart: compare the
        # full PEFs' norms (exact up to rounding) and report the kept entries' difference
        norms_close = np.allclose(sharded.frobenius_norms, reference.frobenius_norms, rtol=1e-3)
        difference = abs(sharded.X - reference.X).max()
        print(f"rank {ranks.rank}/{ranks.world_size} on {ranks.device} (nccl): sharded PEFs of 512 examples in "
              f"{seconds:.2f} s, complete={store.complete}, norms equal the CPU's: {norms_close}, "
              f"max |difference| of kept entries {difference:.2e} (largest entry {np.abs(reference.X.data).max():.2e})")
        assert store.complete and norms_close and np.array_equal(sharded.labels, reference.labels)

if __name__ == "__main__":
    main()
