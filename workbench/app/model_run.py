"""Your own classifier and examples → PEFs → NPEFF → component table, in a run folder.

:func:`run_model` is :func:`~workbench.app.pipeline.run_embedded` for a model and texts of
one's own: the folder it writes is the one the workbench, the notebooks and the reports open
(``Workbench.from_run``, ``RunExplorer.open``, ``export_html``), with the model copied in,
so the panels can score tokens and perturb it. Columns of ``attributes`` (a property of
each example one suspects the model uses: a keyword, a source, a length bucket) get a
purity per component, as the embedded task's strategies do.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.tables import component_table
from ..core.device import resolve_device
from .pipeline import check_new_run_folder, fit_stage, write_or_resume_pefs
from .run_folder import COMPONENTS, EXAMPLES, MODEL, PEFS, Run, RunRecorder


def run_model(
    out: str | os.PathLike,
    model_path: str | os.PathLike,
    texts: Sequence[str],
    labels: Sequence[int] | None = None,
    *,
    attributes: pd.DataFrame | None = None,
    n_components: int = 16,
    kind: str = "lrm",
    n_values: int = 8192,
    n_iters_g_only: int = 100,
    n_iters_joint: int = 400,
    n_top: int = 20,
    seed: int = 0,
    include=None,
    exclude=None,
    max_length: int = 128,
    batch_size: int | None = None,
    device: str | None = None,
    progress: bool = True,
    template: str | None = None,
    label_words: Sequence[str] | None = None,
    label_prefix: str = " ",
) -> Run:
    """NPEFF of a saved classifier (``model_path``: a folder written by ``save_pretrained``, with its
    tokenizer) on ``texts`` (and their ``labels``, or None), written to the run folder ``out`` and
    returned opened.

    The classifier is a sequence classifier, or, with ``template`` and ``label_words``, a causal
    language model read as one (:class:`~workbench.models.lm.ZeroShotClassifier`: the class logits
    are the next-token logits of the label words after ``template.format(text=...)``); the prompt
    is saved beside the model copied into the run, so the workbench reads it the same way.
    ``include``/``exclude`` select the parameters the PEFs cover, as in ``write_pefs``;
    ``max_length`` is where texts are cut (recorded: the explorer tokenizes as the PEFs did).
    Running it again with the same arguments resumes the PEF store.
    """
    from ..models.embedded import load_default_model
    from ..models.prompt import save_prompt
    from ..models.text import encode_texts

    out, source = Path(out), Path(model_path)
    texts = _checked_texts(texts)
    if not (source / "config.json").is_file():
        raise ValueError(f"{source} is not a saved model folder (no config.json): save it with model.save_pretrained("
                         "folder) and tokenizer.save_pretrained(folder)")
    if attributes is not None and len(attributes) != len(texts):
        raise ValueError(f"attributes has {len(attributes)} rows for {len(texts)} texts: one row per text")
    _check_prompt(template, label_words)
    _check_tokenizable(source, texts if template is None else [template.format(text=t) for t in texts])
    check_new_run_folder(out)
    resolved = resolve_device(device)
    params = {"model_path": str(source), "n_examples": len(texts), "n_components": n_components, "kind": kind,
              "n_values": n_values, "n_iters_g_only": n_iters_g_only, "n_iters_joint": n_iters_joint, "n_top": n_top,
              "seed": seed, "include": include, "exclude": exclude, "max_length": max_length, "batch_size": batch_size,
              "device": device}
    if template is not None:
        params.update(template=template, label_words=list(label_words), label_prefix=label_prefix)
    recorder = RunRecorder(out, params, device=resolved, seeds={"fit": seed})

    with recorder.stage("model"):
        if (out / MODEL).resolve() != source.resolve():
            shutil.rmtree(out / MODEL, ignore_errors=True)
            shutil.copytree(source, out / MODEL)
        if template is not None:  # else a prompt the folder holds (a run's model/) reads it as before
            save_prompt(out / MODEL, template, label_words, label_prefix)
        model, tokenizer = load_default_model(out / MODEL)

    with recorder.stage("examples"):
        examples = pd.DataFrame({"text": texts, "label": -1 if labels is None else np.asarray(labels)})
        if attributes is not None:
            examples = pd.concat([examples, attributes.reset_index(drop=True)], axis=1)
        inputs = encode_texts(model, tokenizer, texts, max_length).inputs

    with recorder.stage("pefs"):
        store = write_or_resume_pefs(out / PEFS, model, inputs, examples["label"].to_numpy(), kind=kind,
                                     n_values=n_values, batch_size=batch_size, device=resolved, progress=progress,
                                     include=include, exclude=exclude, provenance={"model_path": str(source)})
        pefs = store.load()
        examples["prediction"] = pefs.predictions
        examples.to_parquet(out / EXAMPLES)
        if labels is not None:
            recorder.figure("analysis_accuracy", float(np.mean(pefs.predictions == pefs.labels)))

    estimator = fit_stage(recorder, out, pefs, kind, n_components, n_iters_g_only, n_iters_joint, seed=seed,
                          device=resolved, progress=progress)

    with recorder.stage("analysis"):
        table = component_table(estimator.W_, estimator.components_, labels=pefs.labels, predictions=pefs.predictions,
                                attributes=attributes.reset_index(drop=True) if attributes is not None else None,
                                n_top=n_top, kind=estimator.kind)
        table.to_csv(out / COMPONENTS)

    recorder.finish()
    return Run(out)


def _check_prompt(template, label_words) -> None:
    from ..models.prompt import check_template

    if template is None and label_words is None:
        return
    if template is None or label_words is None:
        raise ValueError("a language model is read as a classifier with both template= (the prompt, with {text}) and "
                         "label_words= (one word per class, in class order); pass both, or neither for a sequence "
                         "classifier")
    check_template(template)
    if isinstance(label_words, str) or len(label_words) < 2:
        raise ValueError(f"label_words must be a list of at least two words, one per class, got {label_words!r}")


def _check_tokenizable(folder: Path, texts: list[str]) -> None:
    """Before anything is written: every text must give the model at least one token (an empty
    text does not, with a tokenizer that adds no special tokens, as GPT-2's)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    empty = [i for i, ids in enumerate(tokenizer(texts)["input_ids"]) if len(ids) == 0]
    if empty:
        raise ValueError(f"{len(empty)} texts give no tokens at all (first: {empty[:5]}, e.g. {texts[empty[0]]!r}): this "
                         "tokenizer adds no special tokens, so an empty text is no input; remove those texts")


def _checked_texts(texts) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence | pd.Series | np.ndarray):
        raise TypeError(f"texts must be a list of strings, one per example, got {type(texts).__name__}")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: pass at least one example")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must be strings; example {bad[0]} is a {type(texts[bad[0]]).__name__}")
    return texts
