"""``python -m workbench.bench.architectures [--out docs/architectures.md]``: the architecture matrix.

For every family of :data:`workbench.models.architectures.ARCHITECTURES` the installed
transformers has: PEFs of its tiny model by the fast path and by the plain loop
(``method="loop"``), their largest difference relative to the largest entry (LRM with
every class, LRM with the top 2 classes, D), the share of the parameters the fast rules
or torch.func serve (the rest take the exact loop), and examples/s of both on this machine. Writes the
table as Markdown, with the load average beside the timings.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ..core.arguments import check_output_file  # noqa: E402
from ..models.architectures import ARCHITECTURES, available, build, example_inputs  # noqa: E402
from ..runner import PefRun, compute_pefs  # noqa: E402
from ..fisher import PefConfig, eval_mode, split_labels  # noqa: E402

KINDS = (("lrm", None), ("lrm", 2), ("d", None))


def max_relative_error(model, inputs, **kwargs) -> float:
    """Largest |fast − loop| over the largest |loop| entry, over the PEF kinds of :data:`KINDS`."""
    worst = 0.0
    for kind, top_k in KINDS:
        common = dict(kind=kind, top_k_classes=top_k, n_values=None, progress=False, check_resources=False, **kwargs)
        fast = compute_pefs(model, inputs, **common).dense()
        loop = compute_pefs(model, inputs, method="loop", **common).dense()
        worst = max(worst, float(np.abs(fast - loop).max() / max(np.abs(loop).max(), 1e-30)))
    return worst


def fast_share(model, inputs, batch_size: int = 4) -> float:
    """The share of the parameters the fast rules or torch.func serve after the run's check."""
    inputs, labels = split_labels(inputs, None)
    config = PefConfig(n_values=1, batch_size=batch_size)  # the share does not depend on what is kept
    run = PefRun.prepare(model, inputs, labels, config, next(model.parameters()).device)
    with eval_mode(model):
        next(run.chunks())
    return run.plan.fast_share


def rate(model, inputs, method: str, repeats: int = 2, **kwargs) -> float:
    """Examples/s of compute_pefs (best of ``repeats``; the first run also does the check)."""
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        compute_pefs(model, inputs, method=method, progress=False, check_resources=False, **kwargs)
        best = min(best, time.perf_counter() - began)
    n = next(iter(inputs.values())).shape[0] if isinstance(inputs, dict) else inputs.shape[0]
    return n / best


def matrix(names: list[str] | None = None, n_timed: int = 32, length: int = 32) -> list[dict]:
    rows = []
    for name in names or available():
        model = build(name)
        small = example_inputs(name)
        timed = example_inputs(name, n=n_timed, length=length, seed=1)
        fast = rate(model, timed, "hooks", n_values=4096, batch_size=16)
        loop = rate(model, {k: v[:8] for k, v in timed.items()}, "loop", repeats=1, n_values=4096, batch_size=16)
        rows.append(dict(name=name, model=ARCHITECTURES[name].model, parameters=sum(p.numel() for p in model.parameters()),
                         error=max_relative_error(model, small, batch_size=3), share=fast_share(model, small),
                         fast=fast, loop=loop))
        print(f"{name}: {rows[-1]}", flush=True)
    return rows


def markdown(rows: list[dict], load: tuple) -> str:
    import transformers

    lines = [
        "# Architecture matrix",
        "",
        "Written by `python -m workbench.bench.architectures` (do not edit by hand). Each family's tiny",
        "model is built from its transformers config with random weights (`workbench/models/architectures.py`,",
        "hidden width 32, two layers). *Exact*: the largest difference between the fast path's PEFs and",
        "the plain loop's (`method=\"loop\"`), relative to the largest entry, over LRM with every class, LRM",
        "with the top 2 classes and D (float32 rounding is about 1e-7). *Fast share*: the share of the",
        "parameters served by per-example rules, or by `torch.func` per-example gradients for the whole batch",
        "(`workbench/fisher/transforms.py`: DeBERTa's and MPNet's relative positions) or over a sub-module",
        "(`workbench/fisher/regions.py`: T5's relative attention bias, over its encoder and decoder stacks, since",
        "vmap cannot batch its classifier's EOS selection), after the run's check (`workbench/fisher/checks.py`);",
        "the rest take the exact loop. *ex/s*: `compute_pefs` on 32 examples of 32 tokens (loop: 8), top 4096",
        "entries, batches of 16, on this machine's CPU; tiny models are dominated by per-call overheads,",
        "so the speed-up grows with the model (the Llama-shaped case of `python -m workbench.bench`).",
        "The same matrix, smaller, is tested by `tests/fisher/test_architectures.py`.",
        "",
        f"transformers {transformers.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (before) / {load[3]:.2f} (after).",
        "",
        "| family | model class | parameters | exact (max rel. err.) | fast share | ex/s fast | ex/s loop | fast / loop |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | `{r['model']}` | {r['parameters']:,} | {r['error']:.1e} | {100 * r['share']:.2f}% "
                     f"| {r['fast']:.0f} | {r['loop']:.0f} | {r['fast'] / r['loop']:.1f}× |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.bench.architectures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/architectures.md"))
    parser.add_argument("--only", default=None, help="comma-separated family names (default: all available)")
    args = parser.parse_args(argv)
    try:  # before the table is built
        check_output_file(args.out, "--out", "architectures.md")
    except ValueError as error:
        parser.error(str(error))
    logging.getLogger("workbench").setLevel(logging.ERROR)  # the loop fall-backs are in the table
    before = os.getloadavg()
    rows = matrix(args.only.split(",") if args.only else None)
    args.out.write_text(markdown(rows, (*before, os.getloadavg()[0])))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
