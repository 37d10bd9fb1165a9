"""Speed-up of the column-split LRM-NPEFF fit: N ranks against 1, measured in one run.

    python benchmarks/distributed_fit.py                       # CPU: 1 rank (1 and all threads) vs 2 ranks
    python benchmarks/distributed_fit.py --device cuda --configs 1x0   # one GPU through NCCL

Builds a random sparse LRM PEF store (``--n-examples`` × 2 slots × ``--n-parameters``,
``--values-per-row`` non-zeros per row), then starts ``torchrun`` once per configuration
"RANKSxTHREADS" (threads per rank; 0 leaves torch's default) and times, on each rank,
``fit_distributed`` (reading its columns from the store included) and, apart, reading
its columns alone; rank 0's figures are printed, with the speed-up against the first
configuration and the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def make_store(path: Path, n_examples: int, n_parameters: int, values_per_row: int, seed: int = 0) -> None:
    from workbench.core.params import ParameterLayout
    from workbench.core.pefs import LrmPefs
    from workbench.store import save_pefs

    rng = np.random.default_rng(seed)
    n_slots, n_rows = 2, n_examples * 2
    # each example draws its columns around one of 16 "strategies", so columns are shared
    centres = rng.integers(0, n_parameters, 16)
    cols = (centres[rng.integers(0, 16, n_rows)][:, None] + rng.integers(0, n_parameters // 8, (n_rows, values_per_row)))
    cols = np.sort(cols % n_parameters, axis=1)
    X = sp.csr_matrix((rng.standard_normal(cols.size).astype(np.float32), cols.ravel(),
                       np.arange(0, cols.size + 1, values_per_row)), shape=(n_rows, n_parameters))
    X.sum_duplicates()
    a, b = X[0::2].astype(np.float64), X[1::2].astype(np.float64)
    grams = [np.asarray(u.multiply(v).sum(axis=1)).ravel() for u, v in ((a, a), (a, b), (b, b))]
    norms = np.sqrt(grams[0] ** 2 + 2 * grams[1] ** 2 + grams[2] ** 2).astype(np.float32)
    pefs = LrmPefs(X=X, classes=np.tile(np.arange(n_slots), (n_examples, 1)), frobenius_norms=norms,
                   labels=np.zeros(n_examples, np.int64), logits=np.zeros((n_examples, 2), np.float32),
                   layout=ParameterLayout.anonymous(n_parameters))
    save_pefs(pefs, path, examples_per_chunk=1024)


def worker(args: argparse.Namespace) -> None:
    """One rank (started by torchrun): time reading its columns, then the whole fit."""
    import torch

    from workbench.distributed import barrier, fit_distributed, load_column_shard, process_group
    from workbench.npeff import LrmNpeff

    with process_group(args.device) as ranks:
        barrier("starting")
        started = time.perf_counter()
        load_column_shard(args.store, ranks=ranks)
        barrier("reading")
        read_s = time.perf_counter() - started
        estimator = LrmNpeff(args.n_components, n_iters_g_only=args.iters // 2, n_iters_joint=args.iters - args.iters // 2,
                             log_every=args.iters, device=ranks.device, progress=False, seed=0)
        barrier("starting the fit")
        started = time.perf_counter()
        fit_distributed(estimator, args.store)
        if ranks.device.type == "cuda":
            torch.cuda.synchronize()
        barrier("finishing the fit")
        fit_s = time.perf_counter() - started
        if ranks.is_main:
            backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else "none"
            print("BENCH " + json.dumps({
                "world_size": ranks.world_size, "threads": torch.get_num_threads(), "device": str(ranks.device),
                "backend": backend, "fit_s": fit_s, "read_s": read_s,
                "final_loss": float(estimator.loss_history_["joint"][-1, 1]),
            }), flush=True)


def launch(config: str, args: argparse.Namespace, store: Path) -> dict:
    n_ranks, threads = (int(v) for v in config.split("x"))
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env.pop("OMP_NUM_THREADS", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n_ranks),
               __file__, "--worker", "--store", str(store), "--n-components", str(args.n_components),
               "--iters", str(args.iters), "--device", args.device]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH ")]
    if done.returncode or not lines:
        raise SystemExit(f"configuration {config} failed:\n{done.stderr[-4000:]}")
    return json.loads(lines[-1][len("BENCH "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help="an existing LRM store (default: build one)")
    parser.add_argument("--n-examples", type=int, default=4000)
    parser.add_argument("--n-parameters", type=int, default=400_000)
    parser.add_argument("--values-per-row", type=int, default=2000)
    parser.add_argument("--n-components", type=int, default=16)
    parser.add_argument("--iters", type=int, default=20, help="fit iterations (half G-only, half joint)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--configs", default="1x1,1x0,2x1",
                        help="RANKSxTHREADS per rank, comma-separated; 0 threads: torch's default; the first is the baseline")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store
        if store is None:
            store = Path(tmp) / "store"
            started = time.perf_counter()
            make_store(store, args.n_examples, args.n_parameters, args.values_per_row)
            print(f"store: {args.n_examples} examples x 2 slots x {args.n_parameters} parameters, "
                  f"{args.values_per_row} values per row, built in {time.perf_counter() - started:.1f} s")
        print(f"load average before: {_load()}")
        results = [(config, launch(config, args, store)) for config in args.configs.split(",")]
        print(f"load average after:  {_load()}")
    base = results[0][1]["fit_s"]
    print(f"{'config':>8} {'ranks':>5} {'threads':>7} {'backend':>7} {'fit s':>8} {'read s':>7} {'speed-up':>8}  final loss")
    for config, r in results:
        print(f"{config:>8} {r['world_size']:>5} {r['threads']:>7} {r['backend']:>7} {r['fit_s']:>8.2f} "
              f"{r['read_s']:>7.2f} {base / r['fit_s']:>8.2f}  {r['final_loss']:.6g}")


if __name__ == "__main__":
    main()
