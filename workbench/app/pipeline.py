"""The main job: embedded default → PEFs → NPEFF → component summary, in one run folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.defaults import N_ITERS_G_ONLY, N_ITERS_JOINT, N_VALUES
from ..core.arguments import check_model_folder, seed_value, user_path
from ..analysis.tables import chance_purity, component_table
from ..core.device import resolve_device
from ..core.params import HEAD_PATTERN
from ..core.kinds import KINDS
from ..store.files import read_json
from ..models.loading import check_can_pad, is_adapter_folder, load_saved_tokenizer
from ..models.prompt import prompt_of
from .run_folder import Run, RunRecorder, check_new_run_folder, copy_model
from .stages import fit_estimator, run_stages

#: Which parameters the PEFs cover (filters of ``write_pefs``), by name. "no-head" leaves out
#: the layers with no token axis (BERT's pooler and classifier, a decoder's score: HEAD_PATTERN);
#: "encoder" keeps only the transformer layers (no embeddings, pooler or classifier).
SCOPES: dict[str, dict[str, str]] = {
    "all": {},
    "no-head": {"exclude": HEAD_PATTERN},
    "encoder": {"include": r"encoder\.layer\."},
}
#: The scope each base model uses unless told otherwise; chosen by ``python -m workbench.evaluate``
#: (docs/evaluation.md, "Parameter scope"): on MiniLM the classifier and pooler hold most of
#: every example's Fisher mass and every component's direction moves all examples alike.
DEFAULT_SCOPE = {"tiny": "no-head", "minilm": "no-head"}


def run_embedded(
    out: str | os.PathLike = "runs/demo",
    *,
    n_examples: int = 600,
    n_components: int = 16,
    kind: str = "lrm",
    n_values: int = N_VALUES,
    n_iters_g_only: int = N_ITERS_G_ONLY,
    n_iters_joint: int = N_ITERS_JOINT,
    n_top: int = 20,
    seed: int = 0,
    base: str = "tiny",
    scope: str | None = None,
    model_path: str | os.PathLike | None = None,
    batch_size: int | None = 32,
    device: str | None = None,
    progress: bool = True,
) -> Run:
    """Run NPEFF end to end on the embedded task and write everything to ``out``.

    ``model_path`` uses an already trained model folder; otherwise the embedded model
    (``base="tiny"``, or ``"minilm"`` to fine-tune the packaged MiniLM) is trained once
    and cached. ``scope`` names the parameters the PEFs cover (:data:`SCOPES`; None: the
    base's :data:`DEFAULT_SCOPE`). The analysed examples are drawn outside the model's
    training and validation texts (:func:`~workbench.models.embedded.splits.analysis_examples`).
    Running it again with the same arguments resumes the PEF store, and the fit from its last
    checkpoint (:func:`~workbench.app.stages.fit_stage`).
    Returns the opened :class:`~workbench.app.run_folder.Run`.
    """
    check_arguments(
        out=out, n_examples=n_examples, n_components=n_components, kind=kind, n_values=n_values,
        n_iters_g_only=n_iters_g_only, n_iters_joint=n_iters_joint, n_top=n_top, seed=seed, base=base,
        scope=scope, model_path=model_path, batch_size=batch_size, device=device, progress=progress,
    )
    scope = DEFAULT_SCOPE[base] if scope is None else scope
    params = {k: v for k, v in locals().items() if k not in ("out", "progress")}  # the arguments, as run.json records them
    from ..models.embedded import ANALYSIS_SEED_OFFSET, default_model, load_default_model
    from ..models.text import encode_texts
    from ..models.embedded.splits import analysis_examples

    out = user_path(out, "out")
    params["model_path"] = None if model_path is None else str(model_path)
    params["out"] = str(out)
    resolved = resolve_device(device)
    check_new_run_folder(out)
    # a model of one's own is loaded before the folder is touched, as run_model's is: one that cannot load (damaged
    # weights, an adapter whose base does not fit) left a run folder whose record said its model stage failed
    given = None
    if model_path is not None:
        source = user_path(model_path, "model_path")
        given = (source, *load_default_model(source))
        from ..core.validation import check_run_head

        check_run_head(given[1], source)

    def model_stage(recorder: RunRecorder):
        if given is None:
            source = default_model(base=base, seed=seed, progress=progress)
            model, tokenizer = load_default_model(source)
        else:
            source, model, tokenizer = given
        # read from the source: an adapter folder's copy would need its base, the merged model saved does not
        copy_model(source, out, model, tokenizer)
        training = source / "training.json"
        if training.exists():
            recorder.figure("model_heldout_accuracy", read_json(training).get("accuracy"))
        return model, tokenizer, source

    def examples_stage(model, tokenizer, source: Path):
        examples = analysis_examples(n_examples, seed=seed, model_folder=source)
        # with the model: a zero-shot model's prompt, and only the inputs its forward takes (a BERT tokenizer's
        # token_type_ids warned of with a DistilBERT of the user's), as run_model and the explorer encode them
        return examples, encode_texts(model, tokenizer, list(examples["text"]), 64).inputs

    return run_stages(
        out, params, seeds={"model": seed, "examples": seed + ANALYSIS_SEED_OFFSET, "fit": seed}, device=resolved,
        progress=progress, model_stage=model_stage, examples_stage=examples_stage, pef_filters=SCOPES[scope],
        provenance={"base": base, "seed": seed, "examples_seed": seed + ANALYSIS_SEED_OFFSET},
        table_of=strategy_table, figures_of=strategy_figures,
    )


#: The memory one example takes before its PEFs, at the least: its row and its tokens (5.8 KB measured on
#: the tiny model's run; this floor is below it)
EXAMPLE_BYTES = 4096


def check_examples_fit(n: int, argument: str = "n_examples") -> None:
    """Refuse ``n`` examples that the memory cannot hold, before any is drawn: n_examples=10**11 was drawn
    into one list until the system killed the run, with its model and record already written."""
    from ..runner import estimate

    available = estimate.available_memory()
    if available is not None and n * EXAMPLE_BYTES > available:
        raise estimate.InsufficientResourcesError(
            f"{argument}={n} examples need at least {estimate.format_bytes(n * EXAMPLE_BYTES)} of memory for their "
            f"texts and tokens alone, before their PEFs, but only {estimate.format_bytes(available)} is available: "
            f"ask for fewer examples (at most {available // EXAMPLE_BYTES})")


def _integer(name: str, value, minimum: int, none_ok: bool = False) -> None:
    if value is None and none_ok:
        return
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        example = {"batch_size": "32 (or None to choose from the memory available)", "n_values": "8192"}.get(name, "600")
        raise TypeError(
            f"run_embedded: {name} must be an integer{' or None' if none_ok else ''}, got {value!r} "
            f"({type(value).__name__}); in a notebook's parameters cell write e.g. {name} = {example}, "
            f"without quotes (papermill: -p {name} {example.split()[0]})"
        )
    if value < minimum:
        raise ValueError(f"run_embedded: {name} must be at least {minimum}, got {value}")


def check_arguments(*, out, n_examples, n_components, kind, n_values, n_iters_g_only, n_iters_joint, n_top, seed,
                    base, model_path, batch_size, device, progress, scope=None) -> None:
    """Every argument of :func:`run_embedded` checked before anything is written: a wrong type
    (e.g. a notebook parameter given as the string "600") is a TypeError naming the parameter
    and the fix; a wrong value a ValueError."""
    from ..models.embedded import RECIPES

    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"run_embedded: out must be a folder path (str or pathlib.Path), got {out!r}")
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"run_embedded: out={str(out)!r} is a file; give a folder for the run")
    for name, value, minimum in (("n_examples", n_examples, 1), ("n_components", n_components, 1),
                                 ("n_iters_g_only", n_iters_g_only, 0), ("n_iters_joint", n_iters_joint, 0),
                                 ("n_top", n_top, 1), ("seed", seed, 0)):
        _integer(name, value, minimum)
    _integer("n_values", n_values, 1, none_ok=True)
    seed_value(seed)
    _integer("batch_size", batch_size, 1, none_ok=True)
    choices = [("kind", kind, tuple(KINDS)), ("base", base, tuple(RECIPES))] + ([("scope", scope, tuple(SCOPES))] if scope is not None else [])
    for name, value, allowed in choices:
        if not isinstance(value, str):
            raise TypeError(f"run_embedded: {name} must be one of {allowed} (a string), got {value!r}")
        if value not in allowed:
            raise ValueError(f"run_embedded: {name}={value!r} is not one of {allowed}")
    if not isinstance(progress, bool):
        raise TypeError(f"run_embedded: progress must be True or False, got {progress!r}")
    if n_components > n_examples:
        raise ValueError(
            f"run_embedded: n_components={n_components} is larger than n_examples={n_examples}; "
            "use at most as many components as examples"
        )
    fit_estimator(kind, n_components, n_iters_g_only, n_iters_joint, seed=seed)
    check_examples_fit(n_examples)
    if model_path is not None:
        if not isinstance(model_path, (str, os.PathLike)):
            raise TypeError(f"run_embedded: model_path must be a folder path or None, got {model_path!r}")
        check_model_folder(model_path, "run_embedded: model_path", out=out)
        # a sequence classifier: its batches are padded (an adapter folder's tokenizer may be its base's, and the
        # adapter is checked as run_embedded loads it, before the run folder is made)
        if not is_adapter_folder(model_path) and prompt_of(model_path) is None:
            check_can_pad(load_saved_tokenizer(model_path), model_path)
    if device is not None and not isinstance(device, str):
        raise TypeError(f"run_embedded: device must be a string such as 'cpu' or 'cuda', or None; got {device!r}")
    resolve_device(device)


def strategy_table(estimator, pefs, examples: pd.DataFrame, n_top: int) -> pd.DataFrame:
    attributes = pd.DataFrame({"strategy": examples["strategies"].map(tuple)})
    return component_table(
        estimator.W_, estimator.components_, labels=pefs.labels, predictions=pefs.predictions,
        attributes=attributes, n_top=n_top, kind=estimator.kind,
    )


def strategy_figures(table: pd.DataFrame, examples: pd.DataFrame, n_top: int) -> dict:
    """How well components line up with the known strategies."""
    from ..models.embedded import STRATEGIES

    majority = set(table["strategy"].dropna())
    return {
        "mean_strategy_purity": float(table["strategy_purity"].mean()),
        "chance_strategy_purity": chance_purity(examples["strategies"].map(tuple).tolist(), n_top),
        "strategies_covered": sorted(s for s in STRATEGIES if s in majority),
        "n_strategies": len(STRATEGIES),
    }


def summary_text(run: Run) -> str:
    """The component summary printed at the end of the main job."""
    table = run.components()
    figures = run.record["figures"]
    # a top set holds the examples of positive coefficient, up to n_top: all five of a run of five, not 20
    top_size = min(run.params["n_top"], int(table["n_top"].max()))
    columns = [c for c in ("n_top", "mass", "strategy", "strategy_purity", "label", "label_purity", "accuracy") if c in table]
    with pd.option_context("display.width", 120, "display.precision", 3, "display.max_rows", 200):
        lines = [
            f"Run folder: {run.path}",
            f"Model held-out accuracy: {figures.get('model_heldout_accuracy')}, "
            f"accuracy on the analysed examples: {figures.get('analysis_accuracy'):.3f}",
            f"Final NPEFF loss: {figures.get('final_loss'):.4g}",
            "",
            table[columns].to_string(),
            "",
            f"Mean strategy purity of the top {top_size} examples: {figures['mean_strategy_purity']:.3f} "
            f"(chance: {figures['chance_strategy_purity']:.3f})",
            f"Strategies that are the majority of at least one component: {len(figures['strategies_covered'])} of "
            f"{figures['n_strategies']} ({', '.join(figures['strategies_covered'])})",
        ]
    return "\n".join(lines)
