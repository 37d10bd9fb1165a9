"""``python -m workbench.evaluate``: every figure behind the defaults, in one markdown file.

On the embedded task (known strategies, held-out examples) and for each base model
(the tiny BERT, the real all-MiniLM-L6-v2):

- the held-out check: analysed texts also in the training or validation set (must be 0);
- the parameter scope table: NPEFF over all parameters, all but classifier and pooler,
  and the encoder layers only, beside k-means on gradients and dictionary learning on
  activations scored by the same rules (purity, strategies covered, multi-factor examples
  with one / both strategies found), with the median perturbation KL ratio and the
  highlight hit rate;
- the KL ratio of the default scope over seeds;
- the multi-factor study: fit settings (components, n_values, orthogonal regularisation,
  G-only steps, normalisation, D vs LRM) and whether the model uses both strategies
  (perturbing one strategy's component, on the multi-factor examples);
- the component the quickstart showcases (highest KL ratio among pure components).

``--quick`` runs a small version of all of it on the tiny model in about a minute (the
tests run it); the full run takes under 30 minutes on two cores. Not run in CI.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ..app.pipeline import DEFAULT_SCOPE, SCOPES
from ..core.arguments import at_least, check_output_file
from .markdown import write_report
from .measure import Setting, Workspace, cross_perturbation, measure

__all__ = ["Setting", "Workspace", "main", "plan", "evaluate"]


QUICK_EXAMPLES = 160  # the examples of a --quick run, at most


def plan(bases, seeds, quick: bool = False) -> dict[str, list[Setting]]:
    """The settings of each table; ``quick`` shrinks every fit (tiny model only)."""
    size = dict(n_components=4, n_values=1024, n_iters_g_only=10, n_iters_joint=40) if quick else {}
    scopes, seeds_kl, multi, cross = [], [], [], []
    for base in bases:
        default = Setting(base=base, seed=seeds[0], scope=DEFAULT_SCOPE[base], **size)
        # The default scope first: a run stopped early has the figures the defaults rest on.
        scopes += [default.but(scope=scope, highlights=True) for scope in sorted(SCOPES, key=lambda s: s != default.scope)]
        seeds_kl += [default.but(seed=seed, label="seed") for seed in seeds[1:]]
        r = default.n_components
        variants = [
            default.but(n_components=2 * r, label=f"{2 * r} components"),
            default.but(orthogonal_reg=1.0, label="orthogonal_reg 1"),
            default.but(n_iters_g_only=0, label="no G-only steps"),
            default.but(normalize=False, label="not normalised"),
            default.but(kind="d", label="D-NPEFF"),
        ]
        if base == "tiny" or quick:  # MiniLM: a second PEF pass at 4× the entries costs minutes
            variants.append(default.but(n_values=4 * default.n_values, label=f"n_values {4 * default.n_values}"))
        multi += [v.but(perturb=False) for v in variants]
        cross.append(default)
    return {"scope": scopes, "seeds": seeds_kl, "cross": cross, "multi": multi}


def evaluate(out: str | os.PathLike, *, bases=("tiny", "minilm"), seeds=(0, 1), n_examples: int = 600,
             quick: bool = False, progress: bool = True, command: str = "evaluate()") -> Path:
    """Runs :func:`plan` and writes the markdown report to ``out``; returns its path.
    ``command``: how the run was started, for the file's first line."""
    started, load_before = time.perf_counter(), os.getloadavg()
    workspace = Workspace(n_examples=n_examples)
    settings = plan(bases, seeds, quick)
    results: dict[str, list[dict]] = {name: [] for name in settings if name != "cross"}
    crosses = {}
    with tqdm(total=sum(len(s) for s in settings.values()), desc="evaluate", disable=not progress) as bar:
        for name, group in settings.items():
            for setting in group:
                bar.set_postfix_str(f"{name}: {setting.base} {setting.scope} {setting.label}".strip())
                if name == "cross":
                    crosses[setting.base] = cross_perturbation(setting, workspace)
                else:
                    results[name] += measure(setting, workspace, baselines=name != "seeds")
                bar.update()
                # Written after every setting (atomically): a run stopped early leaves its figures so far.
                complete = bar.n == bar.total
                path = _write(out, results, crosses, workspace, bases, seeds, started, load_before, n_examples, quick,
                              complete, command)
    return path


def _write(out, results, crosses, workspace, bases, seeds, started, load_before, n_examples, quick, complete,
           command) -> Path:
    overlaps = {(base, seed): workspace.overlap(base, seed) for base in bases for seed in seeds
                if ("examples", base, seed) in workspace.cached}
    context = {
        "command": command,
        "seconds": time.perf_counter() - started, "load_before": load_before, "load_after": os.getloadavg(),
        "n_examples": n_examples, "quick": quick, "complete": complete,
    }
    return write_report(Path(out), {k: pd.DataFrame(v) for k, v in results.items()}, crosses, overlaps, context)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", nargs="+", choices=["tiny", "minilm"], default=None,
                        help="models to evaluate (default: both; --quick: tiny only)")
    parser.add_argument("--seeds", nargs="+", type=at_least(0), default=[0, 1],
                        help="the first gives every table; the others the KL rows (default: 0 1)")
    parser.add_argument("--n-examples", type=at_least(20), default=None,
                        help=f"examples analysed per run (default: 600; --quick: at most {QUICK_EXAMPLES})")
    parser.add_argument("--out", default=None,
                        help="markdown file to write (default: docs/evaluation.md; --quick: evaluation-quick.md, so that "
                             "a quick run never replaces the figures the docs cite)")
    parser.add_argument("--quick", action="store_true", help="a small run on the tiny model (about a minute)")
    args = parser.parse_args(argv)
    if args.quick and (args.base not in (None, ["tiny"]) or (args.n_examples or 0) > QUICK_EXAMPLES):
        parser.error(f"--quick runs the tiny model on at most {QUICK_EXAMPLES} examples: leave out --base minilm and "
                     "larger --n-examples, or leave out --quick")
    args.out = args.out or ("evaluation-quick.md" if args.quick else "docs/evaluation.md")
    try:  # before the minutes of measuring
        check_output_file(args.out, "--out", "evaluation.md")
    except ValueError as error:
        parser.error(str(error))
    bases = ["tiny"] if args.quick else args.base or ["tiny", "minilm"]
    n_examples = args.n_examples or (QUICK_EXAMPLES if args.quick else 600)
    command = "python -m workbench.evaluate " + " ".join(sys.argv[1:] if argv is None else argv)
    path = evaluate(args.out, bases=bases, seeds=args.seeds, n_examples=n_examples, quick=args.quick, command=command.strip())
    print(f"wrote {path}")
    return 0
