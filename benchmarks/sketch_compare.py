"""Sketched LRM-PEFs against top-n PEFs at the same storage, on the embedded task (docs/sketch.md).

    python benchmarks/sketch_compare.py --base tiny --n-examples 600 --dims 256,1024,4096
    python benchmarks/sketch_compare.py --base minilm --n-examples 160 --dims 1024,8192 --n-components 8

For each projection dimension d, and for top-n PEFs keeping n = d·k entries per example (the
same numbers stored; k class slots): the PEF time, the stored bytes per example, the fit's
time, the time to map the components back to the parameters (sketched only: one more pass
over the exact gradients), the mean strategy purity of the components' top examples,
the strategies covered, and the median KL ratio of the perturbation checks. The embedded
model is the trained default (cached; trained on first use). Prints one Markdown table
and writes it, with the load average, to --json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np
import torch


def _row(name, pefs, pef_seconds, model, inputs, examples, args, unsketch_source=None):
    from workbench.analysis import perturbation_table, unsketch
    from workbench.app.pipeline import strategy_figures, strategy_table
    from workbench.npeff import LrmNpeff

    began = time.perf_counter()
    est = LrmNpeff(args.n_components, n_iters_g_only=args.n_iters_g_only, n_iters_joint=args.n_iters_joint, seed=args.seed,
                   progress=False).fit(pefs)
    fit_seconds = time.perf_counter() - began
    back_seconds = None
    if unsketch_source is not None:
        began = time.perf_counter()
        est = unsketch(est, pefs, model, inputs, batch_size=args.batch_size, progress=False)
        back_seconds = time.perf_counter() - began
    figures = strategy_figures(strategy_table(est, pefs, examples, args.n_top), examples, args.n_top)
    kl = perturbation_table(model, est, inputs, pefs.labels, n_top=args.n_top, epsilon=args.epsilon, progress=False)
    nnz = pefs.X.nnz / pefs.n_examples
    return {
        "pefs": name,
        "pef_s_per_example": pef_seconds / pefs.n_examples,
        "stored_numbers_per_example": nnz,
        "stored_bytes_per_example": nnz * 12,  # float32 value + int64 index, as a store chunk holds them
        "fit_s": fit_seconds,
        "solver": est.solver_,
        "map_back_s": back_seconds,
        "mean_strategy_purity": figures["mean_strategy_purity"],
        "chance_strategy_purity": figures["chance_strategy_purity"],
        "strategies_covered": f"{len(figures['strategies_covered'])}/{figures['n_strategies']}",
        "kl_ratio_median": float(np.median(kl["kl_ratio"])),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="tiny", choices=["tiny", "minilm"])
    parser.add_argument("--n-examples", type=int, default=600)
    parser.add_argument("--dims", default="256,1024,4096")
    parser.add_argument("--n-components", type=int, default=16)
    parser.add_argument("--n-iters-g-only", type=int, default=100)
    parser.add_argument("--n-iters-joint", type=int, default=400)
    parser.add_argument("--n-top", type=int, default=20)
    parser.add_argument("--epsilon", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from workbench import compute_pefs
    from workbench.analysis import perturbation_table, unsketch  # noqa: F401  (imported now: the run reads no later edit)
    from workbench.app.pipeline import strategy_table  # noqa: F401
    from workbench.npeff import LrmNpeff
    from workbench.models.embedded import ANALYSIS_SEED_OFFSET, default_model, load_default_model, make_examples, tokenize

    load_before = os.getloadavg()
    model, tokenizer = load_default_model(default_model(base=args.base, seed=args.seed, progress=False))
    examples = make_examples(args.n_examples, seed=args.seed + ANALYSIS_SEED_OFFSET)
    inputs = tokenize(tokenizer, list(examples["text"]))
    labels = examples["label"].to_numpy()
    n_parameters = sum(p.numel() for p in model.parameters())
    # Warm-up, untimed: numba's compilation and the first backward's one-off costs would land on the first row
    for settings in (dict(sketch=64), dict(n_values=128)):
        few = {k: v[:16] for k, v in inputs.items()}
        LrmNpeff(2, n_iters_g_only=2, n_iters_joint=2, progress=False).fit(compute_pefs(model, few, labels[:16], progress=False, **settings))
    rows = []
    for d in [int(x) for x in args.dims.split(",")]:
        for name, settings in ((f"sketch d={d}", dict(sketch=d)), (None, None)):
            began = time.perf_counter()
            if settings is None:  # top-n at the same storage: as many entries per example as the sketch keeps
                n_values = int(round(rows[-1]["stored_numbers_per_example"]))
                name, settings = f"top-n n={n_values}", dict(n_values=n_values)
            pefs = compute_pefs(model, inputs, labels, batch_size=args.batch_size, progress=False, **settings)
            seconds = time.perf_counter() - began
            source = model if "sketch" in settings else None
            rows.append(_row(name, pefs, seconds, model, inputs, examples, args, unsketch_source=source))
            print(rows[-1], flush=True)
    result = {
        "base": args.base, "n_parameters": n_parameters, "n_examples": args.n_examples, "args": vars(args),
        "torch_threads": torch.get_num_threads(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rows": rows,
    }
    columns = ["pefs", "pef_s_per_example", "stored_bytes_per_example", "fit_s", "map_back_s", "mean_strategy_purity",
               "strategies_covered", "kl_ratio_median"]
    print(f"\n{args.base}: {n_parameters:,} parameters, {args.n_examples} examples, r = {args.n_components}; "
          f"load average {load_before[0]:.1f} before, {result['load_average_after'][0]:.1f} after")
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        cells = [row[c] if isinstance(row[c], str) else "-" if row[c] is None else f"{row[c]:.4g}" for c in columns]
        print("| " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
