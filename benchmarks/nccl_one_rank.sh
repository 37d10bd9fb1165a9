#!/usr/bin/env bash
# The NCCL path on one GPU, one rank, timed: torchrun starts one process, which joins an
# NCCL process group (device cuda => nccl), writes a small sharded PEF store and fits
# LRM-NPEFF with every reduction going through NCCL, then prints its timing beside the
# same fit on the CPU through gloo. About a minute on an H100 (most of it start-up).
#   bash benchmarks/nccl_one_rank.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
"$PY" - <<'PY'
import torch, torch.distributed as dist
from workbench.distributed import backend_for
assert torch.cuda.is_available(), "no CUDA GPU here"
assert dist.is_nccl_available(), "this torch has no NCCL"
assert backend_for(torch.device("cuda")) == "nccl"
print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| NCCL", ".".join(map(str, torch.cuda.nccl.version())))
PY
# sharded PEFs through NCCL (a small MLP, see the worker), then the fit, on one rank
time "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 benchmarks/nccl_pefs_check.py
time "$PY" benchmarks/distributed_fit.py --device cuda --configs 1x0 --n-examples 4000 --n-parameters 400000 --iters 40
