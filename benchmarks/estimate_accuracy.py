"""How close the PEF cost estimate comes to a real run: disk, peak memory (RSS) and time.

    python benchmarks/estimate_accuracy.py                 # embedded default and MiniLM
    python benchmarks/estimate_accuracy.py embedded --n 600

Each case runs in a fresh process, so its peak memory is its own: the process loads the
model and examples, then calls ``write_pefs`` once. Measured: the store's size on disk,
the peak RSS from the start of the run (the kernel's high-water mark, reset when the run's
first batch starts), and the time from the estimate to the end of the run. Estimated: what
``store.estimate`` said before the first chunk was written (time left: the first batch's seconds
per example × the examples after it).
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

ROOT = Path(__file__).resolve().parents[1]


def _minilm_shaped(config_folder: str):
    """all-MiniLM-L6-v2's architecture with random weights: the same cost, for machines without the weights."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    config = AutoConfig.from_pretrained(config_folder, num_labels=2, local_files_only=True)
    return AutoModelForSequenceClassification.from_config(config).eval(), AutoTokenizer.from_pretrained(config_folder)


def _case(which: str, n: int, out: Path, device: str | None = None, config_folder: str | None = None) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from workbench.models.embedded import default_model, load_default_model, make_examples, tokenize
    from workbench.runner.resources import high_water_mark
    from workbench import write_pefs

    if which == "embedded":
        model, tokenizer = load_default_model(default_model(progress=False))
        n_values = 8192
    elif config_folder is not None:
        model, tokenizer = _minilm_shaped(config_folder)
        n_values = 65536
    else:
        from workbench.models.loading import load_classifier

        model, tokenizer = load_classifier("minilm", num_labels=2)
        n_values = 65536
    examples = make_examples(n, seed=2000)
    inputs = tokenize(tokenizer, list(examples["text"]))
    started = time.perf_counter()
    store = write_pefs(out, model, inputs, examples["label"].to_numpy(), n_values=n_values, progress=False, device=device)
    finished = time.perf_counter()
    e = store.estimate
    if e.memory_kind == "CUDA":
        import torch

        peak = torch.cuda.max_memory_allocated()  # since the first batch reset it, like VmHWM below
    else:
        peak = high_water_mark()
    return {
        "case": which, "n_examples": n, "n_parameters": e.n_parameters, "n_values": n_values, "batch_size": e.batch_size,
        "disk": {"estimated": e.disk_bytes, "measured": sum(p.stat().st_size for p in out.rglob("*") if p.is_file())},
        "memory_kind": e.memory_kind, "device": str(device or "default"),
        "peak_memory": {"estimated": e.peak_memory_bytes, "measured": peak},
        "seconds_left": {"estimated": e.seconds_left, "measured": finished - e.made_at},
        "seconds_whole_call": finished - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="*", default=["embedded", "minilm"], help="embedded and/or minilm")
    parser.add_argument("--n", type=int, default=None, help="examples (default: 600 embedded, 128 MiniLM)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: the model's device, the CPU)")
    parser.add_argument("--minilm-config", default=None,
                        help="a folder with MiniLM's config and tokenizer: random weights of its shape (no weights package)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_case(args.which[0], args.n, Path(args.out), args.device, args.minilm_config)))
        return
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for which in args.which:
        n = args.n or (600 if which == "embedded" else 128)
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
            extra = (["--device", args.device] if args.device else []) + (
                ["--minilm-config", args.minilm_config] if args.minilm_config else [])
            done = subprocess.run([sys.executable, __file__, which, "--n", str(n), "--child", "--out", f"{tmp}/pefs", *extra],
                                  env=env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(done.stderr[-3000:])
            result = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"\n{which}: {result['n_examples']} examples, {result['n_parameters']:,} parameters, "
              f"n_values={result['n_values']}, batch size {result['batch_size']} (chosen automatically), "
              f"device {result['device']}, peak memory as {result['memory_kind']}")
        for key, unit, scale in (("disk", "MB", 1e6), ("peak_memory", "MB", 1e6), ("seconds_left", "s", 1)):
            est, meas = result[key]["estimated"] / scale, result[key]["measured"] / scale
            print(f"  {key:12s} estimated {est:10.2f} {unit}   measured {meas:10.2f} {unit}   error {100 * (est - meas) / meas:+6.1f}%")
        print(f"  (seconds_left: after the first batch, when the estimate is shown; the whole call took "
              f"{result['seconds_whole_call']:.2f} s, with the model's fingerprint and the first batch)")


if __name__ == "__main__":
    main()
