"""Command line.

``python -m workbench run notebooks/quickstart.ipynb --out runs/x -p n_components 16`` runs a
notebook headless (papermill) into a run folder with its HTML rendering;
``python -m workbench demo --out runs/demo`` runs the main job without a notebook.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def _demo(args: argparse.Namespace) -> int:
    from .pipeline import run_embedded, summary_text

    run = run_embedded(
        args.out,
        n_examples=args.n_examples,
        n_components=args.n_components,
        n_values=args.n_values,
        n_iters_g_only=args.n_iters_g_only,
        n_iters_joint=args.n_iters_joint,
        seed=args.seed,
        base=args.base,
        device=args.device,
    )
    print(summary_text(run))
    return 0


def _run(args: argparse.Namespace) -> int:
    from .notebook import notebook_parameters, parse_value, run_notebook
    from .run import COMPONENTS

    declared = notebook_parameters(args.notebook)
    parameters = {}
    for name, text in args.parameters:
        if name not in declared:
            raise SystemExit(f"error: {args.notebook} has no parameter {name!r}; its parameters are {list(declared)}")
        try:
            parameters[name] = parse_value(declared[name], text)
        except TypeError as error:
            raise SystemExit(f"error: {error}") from None
    result = run_notebook(args.notebook, args.out, parameters, kernel_name=args.kernel, progress=not args.quiet)
    if (result.folder / COMPONENTS).exists():  # the notebook ran the main job: show what it found
        from .pipeline import summary_text
        from .run import Run

        print(summary_text(Run(result.folder)), end="\n\n")
    print(f"executed notebook: {result.notebook}\nHTML rendering:    {result.html}")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the embedded default never needs the Hub
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m workbench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="NPEFF end to end on the embedded default task")
    demo.add_argument("--out", default="runs/demo", help="run folder to write")
    demo.add_argument("--n-examples", type=int, default=600)
    demo.add_argument("--n-components", type=int, default=16)
    demo.add_argument("--n-values", type=int, default=8192, help="PEF entries kept per example")
    demo.add_argument("--n-iters-g-only", type=int, default=100)
    demo.add_argument("--n-iters-joint", type=int, default=400)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--base", choices=["tiny", "minilm"], default="tiny", help="model to train on the task")
    demo.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when present)")
    demo.set_defaults(handler=_demo)

    run = commands.add_parser("run", help="run a notebook headless (papermill) and render it to HTML")
    run.add_argument("notebook", help="the notebook, e.g. notebooks/quickstart.ipynb")
    run.add_argument("--out", required=True, help="folder for the executed notebook, its HTML and the run")
    run.add_argument("-p", "--parameter", dest="parameters", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"), help="set a notebook parameter (repeatable)")
    run.add_argument("--kernel", default=None, help="Jupyter kernel (default: the notebook's)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)

    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
