"""The command line: ``python -m workbench COMMAND``.

    python -m workbench demo --out runs/demo              the main job, end to end
    python -m workbench run notebooks/quickstart.ipynb --out runs/x -p n_components 16
                                                          a notebook headless (papermill), with its HTML

These run on one process, or on several with torchrun (README, "Several GPUs or
nodes"); every rank gets the same arguments:

    torchrun --nproc_per_node N -m workbench pefs --out STORE          PEFs of the embedded task, batches shared out
    torchrun --nproc_per_node N -m workbench fit STORE --out FILE      NPEFF with the parameters split across ranks
    torchrun --nproc_per_node N -m workbench transform FILE STORE --out COEFFS
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import time
import warnings
from datetime import timedelta

from ..core.defaults import N_ITERS_G_ONLY, N_ITERS_JOINT, N_VALUES
from ..core.arguments import (MAX_SEED, at_least, check_model_folder, check_output_file, check_outside_run, enclosing_run,
                              is_within, positive_number, user_path)
from ..core.kinds import KINDS


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
        scope=args.scope,
        device=args.device,
    )
    print(summary_text(run))
    return 0


def _pefs(args: argparse.Namespace) -> int:
    from ..distributed import barrier, process_group, write_pefs_sharded
    from ..models.embedded import default_model, load_default_model
    from ..models.embedded.splits import analysis_examples
    from ..models.text import encode_texts
    from ..store.writer import existing_manifest
    from .pipeline import check_examples_fit

    check_examples_fit(args.n_examples, "--n-examples")  # before the model trains
    _outside_run(args.out, "--out", "PEFs", "pefs")
    existing_manifest(args.out, args.overwrite)  # a folder that is no store, or cannot be written: named now
    if args.model_path is not None:
        if args.base is not None:
            raise ValueError("--base names the model to train on the task, and --model-path a model already trained: "
                             "pass one of them")
        check_model_folder(args.model_path, "--model-path", out=args.out, out_argument="--out")
    args.base = args.base or "tiny"
    with process_group(args.device, timedelta(minutes=args.timeout_minutes)) as ranks:
        if args.model_path is None and ranks.is_main:  # trained (once, then cached) by rank 0 alone
            default_model(base=args.base, seed=args.seed, progress=False)
        barrier("waiting for rank 0 to train the embedded model")
        path = args.model_path or default_model(base=args.base, seed=args.seed, progress=False)
        model, tokenizer = load_default_model(path)
        examples = analysis_examples(args.n_examples, seed=args.seed, model_folder=path)
        # as the model reads them: a tokenizer of another family's token_type_ids left out, not warned about to a
        # user who chose no inputs (the embedded task's 64 tokens, as tokenize cuts them)
        inputs = encode_texts(model, tokenizer, list(examples["text"]), 64).inputs
        started = time.perf_counter()
        store = write_pefs_sharded(
            args.out, model, inputs, examples["label"].to_numpy(), kind=args.kind, n_values=args.n_values,
            batch_size=args.batch_size, device=ranks.device, overwrite=args.overwrite, progress=ranks.is_main,
            provenance={"model_path": args.model_path, "base": args.base, "seed": args.seed},
        )
        if ranks.is_main:
            print(f"{store!r}: {store.n_chunks} chunks written by {ranks.world_size} rank(s) in "
                  f"{time.perf_counter() - started:.1f} s")
    return 0


def _outside_run(path: str, option: str, what: str, example: str) -> None:
    """``path`` refused inside a run folder, naming the command that made the run (and makes its files again)."""
    from .run_folder import Run

    rerun, run = None, enclosing_run(path)
    if run is not None:
        with contextlib.suppress(Exception):  # a damaged record: the message names the run folder still
            rerun = f"run it again: {Run(run).command()}"
    check_outside_run(path, option, what, example=example, rerun=rerun)


def _check_out(out: str, *inputs: str) -> None:
    """``--out`` checked before the work: a file to write, not a folder, nor one of the command's
    inputs or a file inside one (a store), in a folder that exists, nor a file of the user's."""
    from ..store.files import check_replaceable

    for given in inputs:
        if is_within(out, given):
            raise ValueError(f"--out {out} would overwrite the input {given}; choose another file")
    check_output_file(out, "--out", "result.safetensors")
    _outside_run(out, "--out", "a result", "result.safetensors")
    check_replaceable(out, "decomposition or other safetensors file")


def _fit(args: argparse.Namespace) -> int:
    from ..distributed import fit_distributed, process_group
    from ..npeff import estimator_for
    from ..store.pef_store import PefStore
    from .fit_memory import check_fit_memory

    _check_out(args.out, args.store)
    if args.checkpoint is not None:
        checkpoint = check_output_file(args.checkpoint, "--checkpoint", "fit.ckpt").resolve()
        _outside_run(args.checkpoint, "--checkpoint", "a checkpoint", "fit.ckpt")
        if checkpoint == user_path(args.out).resolve() or is_within(checkpoint, args.store):
            raise ValueError(f"--checkpoint {args.checkpoint} is the --out file or inside the store; give it a file of "
                             "its own")
    with process_group(args.device, timedelta(minutes=args.timeout_minutes)) as ranks:
        store = PefStore(args.store)
        common = dict(seed=args.seed, min_nonzero_per_col=args.min_nonzero_per_col, device=ranks.device,
                      progress=ranks.is_main)
        estimator = estimator_for(store.kind).for_iterations(args.n_components, args.n_iters_g_only, args.n_iters_joint,
                                                             **common)
        check_fit_memory(store, args.n_components, solver=getattr(estimator, "solver", None),
                         min_nonzero_per_col=args.min_nonzero_per_col, device=ranks.device, n_ranks=ranks.world_size,
                         resume="the same command on a machine with more memory (or on more ranks, which split the "
                                "parameters) fits it", refuse=ranks.world_size == 1)  # no rank refuses alone
        started = time.perf_counter()
        fit_distributed(estimator, store, checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every)
        seconds = time.perf_counter() - started
        if ranks.is_main:
            estimator.save(args.out)
            print(f"{type(estimator).__name__} of {store.path} ({store.n_examples} examples, "
                  f"{estimator.kept_columns_.size} kept parameters) on {ranks.world_size} rank(s), {ranks.device}: "
                  f"fit in {seconds:.2f} s, final loss {estimator.final_loss_}; saved {args.out}")
    return 0


def _check_same_kind(decomposition, store) -> None:
    """The decomposition was fitted to PEFs of the store's kind: the estimator is the store's, so a D-NPEFF
    decomposition beside an LRM store was blamed as "not npeff-workbench/d-npeff", a valid file."""
    from ..npeff import ESTIMATORS
    from ..store.files import StoreError, read_header

    found = read_header(decomposition).get("format")
    fitted = next((e for e in ESTIMATORS.values() if e.file_format.name == found), None)
    if fitted is not None and fitted.kind != store.kind:
        raise StoreError(f"{store.path} holds {store.kind!r} PEFs, but {decomposition} is a fitted {fitted.__name__}, "
                         f"fitted to {fitted.kind!r} PEFs: transform needs PEFs of its kind (compute them with --kind "
                         f"{fitted.kind}), or a decomposition fitted to this store's")


def _transform(args: argparse.Namespace) -> int:
    from ..distributed import process_group, transform_distributed
    from ..npeff import estimator_for
    from ..store.files import producer, write_arrays
    from ..store.formats import COEFFICIENTS
    from ..store.pef_store import PefStore

    _check_out(args.out, args.store, args.decomposition)
    with process_group(args.device, timedelta(minutes=args.timeout_minutes)) as ranks:
        store = PefStore(args.store)
        _check_same_kind(args.decomposition, store)
        estimator = estimator_for(store.kind).load(args.decomposition)
        estimator.device, estimator.progress = ranks.device, False
        W = transform_distributed(estimator, store)
        if ranks.is_main:
            header = {**COEFFICIENTS.header(), "producer": producer(),
                      "decomposition": str(args.decomposition), "store": str(args.store)}
            write_arrays(args.out, {"W": W}, header)
            print(f"coefficients of {W.shape[0]} examples on {W.shape[1]} components: {args.out}")
    return 0


def _distributed_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present); "
                         "under torchrun, rank r uses cuda:LOCAL_RANK with NCCL, the CPU with gloo")
    command.add_argument("--timeout-minutes", type=positive_number, default=30.0,
                         help="how long a rank waits for the others before the job fails")


def _run(args: argparse.Namespace) -> int:
    from .notebook import notebook_parameters, parse_value, run_notebook
    from .run_folder import COMPONENTS

    notebook = user_path(args.notebook)
    if not notebook.is_file() or notebook.suffix != ".ipynb":
        raise FileNotFoundError(f"{notebook} is not a notebook file (.ipynb): give the path of one, e.g. "
                                "notebooks/quickstart.ipynb")
    declared = notebook_parameters(notebook)
    parameters = {}
    for name, text in args.parameters:  # bad values exit 2 with the other bad input, as out-of-range ones did
        if name not in declared:
            raise ValueError(f"{args.notebook} has no parameter {name!r}; its parameters are {list(declared)}")
        parameters[name] = parse_value(declared[name], text)
    result = run_notebook(args.notebook, args.out, parameters, kernel_name=args.kernel, progress=not args.quiet)
    if (result.folder / COMPONENTS).exists():  # the notebook ran the main job: show what it found
        from .pipeline import summary_text
        from .run_folder import Run

        print(summary_text(Run(result.folder)), end="\n\n")
    print(f"executed notebook: {result.notebook}\nHTML rendering:    {result.html}")
    return 0


#: Help for options declared without one (every option's default is shown by the formatter).
OPTION_HELP = {
    "n_examples": "examples of the embedded task to analyse",
    "n_components": "NPEFF components to fit",
    "n_iters_g_only": "fit iterations that update the components G only, before the joint ones",
    "n_iters_joint": "fit iterations that update W and G together",
    "seed": "seed of the model's training, the examples and the fit",
    "min_nonzero_per_col": "parameters kept only where at least this many examples have a value",
    "base": "model to train on the task (tiny: the embedded BERT; minilm: all-MiniLM-L6-v2, offline)",
    "kind": "PEF kind: lrm (low-rank) or d (diagonal)",
}


POSITIVE, COUNT = at_least(1), at_least(0)
SEED = at_least(0, MAX_SEED)  # torch's range: a larger one was scikit-learn's words about 'seed', not --seed


class _DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless its help already says what the default is."""

    def _get_help_string(self, action):
        help = action.help or ""
        return help if "default" in help or action.required else super()._get_help_string(action)


def _describe(commands) -> None:
    """Every subcommand's --help lists each option with a line of help and its default."""
    for command in commands.choices.values():
        command.formatter_class = _DefaultsShown
        for action in command._actions:
            if action.help is None and action.dest in OPTION_HELP:
                action.help = OPTION_HELP[action.dest]


#: The Python API's fixes as the command line's: the messages are the library's, shared with the API
API_CALLS = {"write_pefs(..., overwrite=True)": "python -m workbench pefs --overwrite",
             "write_pefs(...)": "python -m workbench pefs"}


def as_flags(message: str, command: argparse.ArgumentParser) -> str:
    """``message`` with the Python API's arguments named as ``command``'s flags: "raise n_iters_joint (e.g.
    n_iters_joint=400)" told a command-line user of an argument they cannot pass."""
    import re

    flags = {a.dest: a for a in command._actions if a.option_strings and a.option_strings[-1].startswith("--")
             and a.dest != "help"}
    for call, command_line in API_CALLS.items():
        message = message.replace(call, command_line)

    def value(match):
        action = flags[match.group(1)]
        return action.option_strings[-1] + ("" if action.nargs == 0 else " " + match.group(2).strip("'\""))

    message = re.sub(rf"\b({'|'.join(flags)})=('[^']*'|\"[^\"]*\"|[\w.+-]+)", value, message)  # device='cpu'
    # a bare name is an argument's where it cannot be an English word: n_iters_joint, not seed or device
    names = [dest for dest in flags if "_" in dest]
    if names:
        message = re.sub(rf"(?<![\w-])({'|'.join(names)})\b", lambda m: flags[m.group(1)].option_strings[-1], message)
    # "pass --overwrite (--overwrite on the command line)": said once is enough
    return re.sub(r" \((--[\w-]+) on the command line\)",
                  lambda m: "" if m.group(1) in message[:m.start()] else m.group(0), message)


def main(argv: list[str] | None = None) -> int:
    from ..distributed import DistributedError
    from ..npeff.base import NpeffDivergenceError
    from ..runner.estimate import InsufficientResourcesError
    from .notebook import NotebookError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the embedded default never needs the Hub
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m workbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="NPEFF end to end on the embedded default task")
    demo.add_argument("--out", default="runs/demo", help="run folder to write")
    demo.add_argument("--n-examples", type=POSITIVE, default=600)
    demo.add_argument("--n-components", type=POSITIVE, default=16)
    demo.add_argument("--n-values", type=POSITIVE, default=N_VALUES, help="PEF entries kept per example")
    demo.add_argument("--n-iters-g-only", type=COUNT, default=N_ITERS_G_ONLY)
    demo.add_argument("--n-iters-joint", type=COUNT, default=N_ITERS_JOINT)
    demo.add_argument("--seed", type=SEED, default=0)
    demo.add_argument("--base", choices=["tiny", "minilm"], default="tiny", help="model to train on the task")
    demo.add_argument("--scope", choices=["all", "no-head", "encoder"], default=None,
                      help="parameters the PEFs cover (default: the base's, docs/evaluation.md)")
    demo.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when present)")
    demo.set_defaults(handler=_demo)

    pefs = commands.add_parser("pefs", help="PEFs of the embedded task into a store (batches shared out among ranks)")
    pefs.add_argument("--out", required=True, help="PEF store folder (one folder all ranks share)")
    pefs.add_argument("--model-path", default=None, help="a trained model folder (default: the embedded model)")
    pefs.add_argument("--base", choices=["tiny", "minilm"], default=None,
                      help="model to train on the task, without --model-path (default: tiny)")
    pefs.add_argument("--n-examples", type=POSITIVE, default=600)
    pefs.add_argument("--seed", type=SEED, default=0, help="seed of the examples (and of the embedded model's training, without --model-path)")
    pefs.add_argument("--kind", choices=list(KINDS), default="lrm")
    pefs.add_argument("--n-values", type=POSITIVE, default=N_VALUES, help="PEF entries kept per example")
    pefs.add_argument("--batch-size", type=POSITIVE, default=32, help="examples per batch (and per chunk file)")
    pefs.add_argument("--overwrite", action="store_true", help="replace a store made with other arguments")
    _distributed_options(pefs)
    pefs.set_defaults(handler=_pefs)

    fit = commands.add_parser("fit", help="LRM- or D-NPEFF of a PEF store (parameters split among ranks)")
    fit.add_argument("store", help="PEF store folder")
    fit.add_argument("--out", required=True, help="decomposition file to write (.safetensors), by rank 0")
    fit.add_argument("--n-components", type=POSITIVE, default=16)
    fit.add_argument("--n-iters-g-only", type=COUNT, default=N_ITERS_G_ONLY,
                     help="iterations that update the components G only, before the joint ones (D-NPEFF has one phase "
                          "of g-only + joint iterations)")
    fit.add_argument("--n-iters-joint", type=COUNT, default=N_ITERS_JOINT)
    fit.add_argument("--min-nonzero-per-col", type=POSITIVE, default=1)
    fit.add_argument("--seed", type=SEED, default=0, help="seed of the fit's random start")
    fit.add_argument("--checkpoint", default=None,
                     help="save the fit's state to this file (one per rank under torchrun) every --checkpoint-every "
                          "steps; the same command again resumes from it (default: none)")
    fit.add_argument("--checkpoint-every", type=POSITIVE, default=50, help="steps between checkpoint saves")
    _distributed_options(fit)
    fit.set_defaults(handler=_fit)

    transform = commands.add_parser("transform", help="coefficients of a store's examples on fitted components")
    transform.add_argument("decomposition", help="decomposition file written by fit")
    transform.add_argument("store", help="PEF store folder")
    transform.add_argument("--out", required=True, help="coefficients file to write (.safetensors, array W)")
    _distributed_options(transform)
    transform.set_defaults(handler=_transform)

    run = commands.add_parser("run", help="run a notebook headless (papermill) and render it to HTML")
    run.add_argument("notebook", help="the notebook, e.g. notebooks/quickstart.ipynb")
    run.add_argument("--out", required=True, help="folder for the executed notebook, its HTML and the run")
    run.add_argument("-p", "--parameter", dest="parameters", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"), help="set a notebook parameter (repeatable)")
    run.add_argument("--kernel", default=None, help="Jupyter kernel (default: the notebook's)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)

    _describe(commands)
    args = parser.parse_args(argv)
    command = commands.choices[args.command]
    if getattr(args, "device", None) is not None:  # before any work, named as the flag (as python -m workbench.bench)
        from ..core.device import resolve_device

        try:
            resolve_device(args.device)
        except ValueError as error:
            command.error(as_flags(f"--device {args.device}: {error}", command))
    try:
        with warnings.catch_warnings():  # a ConvergenceWarning's "raise n_iters_joint", as the flag
            shown = warnings.showwarning
            warnings.showwarning = lambda message, *rest, **kw: shown(as_flags(str(message), command), *rest, **kw)
            return args.handler(args)
    except DistributedError as err:  # the other ranks' logs say which one failed first
        logging.getLogger("workbench").error("%s", as_flags(str(err), command))
        return 1
    except (ValueError, TypeError, OSError) as err:  # bad input (StoreError included): the message says what to do
        logging.getLogger("workbench").error("%s: %s", type(err).__name__, as_flags(str(err), command))
        return 2
    except (InsufficientResourcesError, NpeffDivergenceError) as err:  # the message has the numbers and the fix
        logging.getLogger("workbench").error("%s: %s", type(err).__name__, as_flags(str(err), command))  # a
        return 1  # traceback buried it
    except NotebookError as err:  # the executed notebook and its HTML show the failing cell
        logging.getLogger("workbench").error("%s", err)
        return 1
    except KeyboardInterrupt:
        logging.getLogger("workbench").error("interrupted: what was written is whole; %s", _resumes(args))
        return 130


def _resumes(args: argparse.Namespace) -> str:
    """What the same command does after an interrupt: an interrupted fit was told that "the same command resumes a
    PEF store where it stopped", and started over without --checkpoint."""
    if args.command == "fit":
        if args.checkpoint is None:
            return ("the same command fits again from the start (with --checkpoint FILE, a fit saves its state every "
                    "--checkpoint-every steps and resumes from it)")
        return f"the same command resumes the fit from its checkpoint {args.checkpoint}"
    if args.command == "transform":
        return "the same command computes the coefficients again"
    if args.command in ("demo", "run"):  # a run folder's PEF store and fit (a notebook's run_embedded or run_model)
        return "the same command resumes the run: its PEF store where it stopped, its fit from the fit's last checkpoint"
    return "the same command resumes a PEF store where it stopped"
