"""Where a GPU's PEF time goes: torch.profiler over one write_pefs call of the bert-base case.

    python benchmarks/gpu/profile_pefs.py [--examples 32] [--batch-size 16]

Prints the wall time of the call and the operators with the most device time and the most
host time (the host's share shows launch and synchronisation overhead).
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from workbench.bench import bert_base_case
from workbench import write_pefs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    device = torch.device("cuda")
    model, inputs = bert_base_case(device, args.examples)
    with tempfile.TemporaryDirectory() as folder:
        run = lambda: write_pefs(Path(folder) / "pefs", model, inputs, device=device, progress=False, overwrite=True,
                                 n_values=65536, batch_size=args.batch_size)
        run()  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            run()
            torch.cuda.synchronize()
        print(f"one call, {args.examples} examples: {time.perf_counter() - start:.3f} s (profiled)")
    table = prof.key_averages()
    print(table.table(sort_by="self_cuda_time_total", row_limit=18, max_name_column_width=48))
    print(table.table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=48))


if __name__ == "__main__":
    main()
