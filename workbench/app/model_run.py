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
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..core.defaults import N_ITERS_G_ONLY, N_ITERS_JOINT, N_VALUES
from ..analysis.tables import (RESERVED_COLUMNS, attribute_figures, check_attribute_cells, check_attribute_names,
                               component_table)
from ..core.arguments import check_model_folder, flag, positive_int, seed_value, user_path
from ..core.device import resolve_device
from ..core.kinds import KINDS
from ..core.params import select_parameters
from ..models.text import TEXT_PAIR_COLUMN, are_pairs, checked_texts, is_pair, tokenized
from ..core.validation import as_labels, check_label_range, check_run_head, max_positions, name_filter
from .run_folder import MODEL, Run, RunRecorder, check_new_run_folder, copy_model
from .stages import fit_estimator, run_stages

DEFAULT_MAX_LENGTH = 128


def run_model(
    out: str | os.PathLike,
    model_path: str | os.PathLike,
    texts: Sequence[str] | Sequence[tuple[str, str]],
    labels: Sequence[int] | None = None,
    *,
    attributes: pd.DataFrame | None = None,
    n_components: int = 16,
    kind: str = "lrm",
    n_values: int = N_VALUES,
    n_iters_g_only: int = N_ITERS_G_ONLY,
    n_iters_joint: int = N_ITERS_JOINT,
    n_top: int = 20,
    seed: int = 0,
    include=None,
    exclude=None,
    max_length: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    progress: bool = True,
    template: str | None = None,
    label_words: Sequence[str] | None = None,
    label_prefix: str = " ",
) -> Run:
    """NPEFF of a saved classifier (``model_path``: a folder written by ``save_pretrained``, with its
    tokenizer) on ``texts`` (and their ``labels``, or None), written to the run folder ``out`` and
    returned opened. ``texts`` may be pairs, ``(first, second)`` (an NLI premise and hypothesis, two
    questions: from a DataFrame, ``list(zip(frame.premise, frame.hypothesis))``): each is encoded as the
    tokenizer encodes pairs (token type ids kept where the model reads them), cut longest first, and
    stored as the ``text`` and ``text_pair`` columns of the examples.

    The classifier is a sequence classifier, or, with ``template`` and ``label_words``, a causal
    language model read as one (:class:`~workbench.models.lm.ZeroShotClassifier`: the class logits
    are the next-token logits of the label words after ``template.format(text=...)``); the prompt
    is saved beside the model copied into the run, so the workbench reads it the same way.
    ``include``/``exclude`` select the parameters the PEFs cover, as in ``write_pefs``;
    ``max_length`` is where texts are cut (None: 128 tokens, or the model's positions if fewer;
    recorded: the explorer tokenizes as the PEFs did). Every argument, and the model itself, is
    checked before the run folder is touched.
    Running it again with the same arguments resumes the PEF store, and the fit from its last checkpoint.
    """
    from ..models.prompt import save_prompt
    from ..models.text import encode_texts

    out, source = user_path(out, "out"), user_path(model_path, "model_path")
    _check_aligned(texts, labels=labels, attributes=attributes)
    texts = checked_texts(texts)
    if template is not None and are_pairs(texts):
        raise ValueError("template= reads one text per example ({text}), and texts are pairs: join each pair into "
                         "one text (e.g. f'{premise} {hypothesis}'), or use a sequence classifier without template=")
    check_model_folder(source, "model_path", out=out)
    flag(progress, "progress")
    attributes = _checked_attributes(attributes, len(texts))
    _check_prompt(template, label_words)
    _check_counts(n_components=n_components, n_values=n_values, n_iters_g_only=n_iters_g_only,
                  n_iters_joint=n_iters_joint, n_top=n_top, seed=seed, batch_size=batch_size, n_texts=len(texts))
    _check_choice("kind", kind, tuple(KINDS))
    fit_estimator(kind, n_components, n_iters_g_only, n_iters_joint, seed=seed)
    # Everything a model can refuse is found now, before the run folder is touched: weights that
    # would load at random, no tokenizer, label words it does not know, a filter that keeps nothing.
    model, tokenizer = _load(source, template, label_words, label_prefix)
    n_classes = check_run_head(model, source)
    _check_label_names(labels, model, source)
    labels = as_labels(labels, len(texts))  # the checks write_pefs makes, made before the folder is touched
    check_label_range(labels, n_classes)
    labels = labels.numpy()
    max_length = _checked_max_length(max_length, model)
    include, exclude = name_filter(include, "include"), name_filter(exclude, "exclude")  # patterns as their text
    if callable(include) or callable(exclude):  # the run records its arguments, and the explorer reads them back
        raise ValueError("a run cannot record a function as its parameter filter (include/exclude); pass regular "
                         "expressions")
    with warnings.catch_warnings():  # the PEF run warns of a filter that matches nothing, once
        warnings.simplefilter("ignore")
        select_parameters(model, include, exclude)
    _check_tokenizable(tokenizer, texts if template is None else [template.format(text=t) for t in texts])
    check_new_run_folder(out)
    resolved = resolve_device(device)
    params = {"model_path": str(source), "n_examples": len(texts), "n_components": n_components, "kind": kind,
              "n_values": n_values, "n_iters_g_only": n_iters_g_only, "n_iters_joint": n_iters_joint, "n_top": n_top,
              "seed": seed, "include": include, "exclude": exclude, "max_length": max_length, "batch_size": batch_size,
              "device": None if device is None else str(device)}
    if template is not None:
        params.update(template=template, label_words=list(label_words), label_prefix=label_prefix)

    def model_stage(recorder: RunRecorder):
        copy_model(source, out, model, tokenizer)
        if template is not None:  # else a prompt the folder holds (a run's model/) reads it as before
            save_prompt(out / MODEL, template, label_words, label_prefix)
        return model, tokenizer, source

    def examples_stage(model, tokenizer, source: Path):
        examples = pd.DataFrame({"text": texts, "label": labels}) if not are_pairs(texts) else pd.DataFrame(
            {"text": [t[0] for t in texts], TEXT_PAIR_COLUMN: [t[1] for t in texts], "label": labels})
        if attributes is not None:
            examples = pd.concat([examples, attributes], axis=1)
        return examples, encode_texts(model, tokenizer, texts, max_length).inputs

    def table_of(estimator, pefs, examples: pd.DataFrame, n_top: int) -> pd.DataFrame:
        return component_table(estimator.W_, estimator.components_, labels=pefs.labels, predictions=pefs.predictions,
                               attributes=attributes, n_top=n_top, kind=estimator.kind)

    return run_stages(out, params, seeds={"fit": seed}, device=resolved, progress=progress, model_stage=model_stage,
                      examples_stage=examples_stage, pef_filters={"include": include, "exclude": exclude},
                      provenance={}, table_of=table_of, made_by="run_model",
                      figures_of=None if attributes is None else lambda table, _, n: attribute_figures(table, attributes, n))


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


def _load(source: Path, template, label_words, label_prefix):
    """The model and tokenizer the run will read, from the saved folder: a sequence classifier,
    or with a template a causal language model read through it."""
    from ..models.loading import is_adapter_folder, load_adapter
    from ..models.embedded import load_default_model
    from ..models.lm import load_zero_shot

    if is_adapter_folder(source):
        if template is not None:
            raise ValueError(f"{source} holds a PEFT adapter, which run_model reads as a sequence classifier; for a "
                             "language model read through template=, merge it first (merge_and_unload) and save it")
        return load_adapter(source)
    if template is None:
        return load_default_model(source)
    return load_zero_shot(source, {"template": template, "label_words": label_words, "label_prefix": label_prefix})


def _check_tokenizable(tokenizer, texts: list) -> None:
    """Every text must give the model at least one token (an empty text does not, with a
    tokenizer that adds no special tokens, as GPT-2's)."""
    empty = [i for i, ids in enumerate(tokenized(tokenizer, texts)["input_ids"]) if len(ids) == 0]
    if not empty:
        return
    first = texts[empty[0]]
    first = "".join(first) if is_pair(first) else first  # a pair of empty texts, with a tokenizer that adds nothing
    if first.strip():  # a text with words and no token: the tokenizer read is not the one meant
        raise ValueError(f"{len(empty)} texts give no tokens at all, e.g. {first!r}, which is not empty: the tokenizer "
                         f"loaded from the model folder ({type(tokenizer).__name__}) does not read them. If the folder "
                         "was saved with another tokenizer, its tokenizer_config.json may name a class that is not it: "
                         "check that AutoTokenizer.from_pretrained(folder) tokenizes your texts")
    raise ValueError(f"{len(empty)} texts give no tokens at all (first: {empty[:5]}, e.g. {first!r}): this "
                     "tokenizer adds no special tokens, so an empty text is no input; remove those texts")


def _check_counts(*, n_texts: int, **counts) -> None:
    minimum = {"n_iters_g_only": 0, "n_iters_joint": 0}
    for name, value in counts.items():
        if name == "seed":
            seed_value(value)
        elif value is not None or name not in ("n_values", "batch_size"):
            positive_int(value, name, minimum.get(name, 1))
    if counts["n_components"] > n_texts:
        raise ValueError(f"n_components={counts['n_components']} is more than the {n_texts} texts; use at most as "
                         "many components as examples")


def _check_choice(name: str, value, allowed: tuple) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _checked_attributes(attributes, n_texts: int) -> pd.DataFrame | None:
    if attributes is None:
        return None
    if not isinstance(attributes, pd.DataFrame):
        raise TypeError(f"attributes must be a pandas DataFrame with one row per text and a column per attribute, "
                        f"got {type(attributes).__name__}; e.g. pd.DataFrame({{'source': sources}})")
    if len(attributes) != n_texts:
        raise ValueError(f"attributes has {len(attributes)} rows for {n_texts} texts: one row per text")
    attributes = attributes.reset_index(drop=True)
    check_attribute_names(attributes.columns, RUN_COLUMNS)
    for name in attributes.columns:
        _check_attribute_cells(attributes[name])
    return attributes


#: Columns of examples.parquet and components.csv that the run writes: an attribute of that name
#: would replace one, or stand beside it with the same name.
RUN_COLUMNS = RESERVED_COLUMNS | {"text", TEXT_PAIR_COLUMN}


def _check_attribute_cells(column: pd.Series) -> None:
    """An attribute's cells are values (a tuple or list for several), of one type, as examples.parquet keeps them."""
    import pyarrow as pa

    check_attribute_cells(column)  # as the component table counts them
    try:
        pa.array(column, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
        raise TypeError(f"attributes column {column.name!r} mixes kinds of values ({error}): make it one kind, e.g. "
                        "attributes[name].astype(str)") from None


def _check_label_names(labels, model, source) -> None:
    """Labels given as the names of a model that names its classes: as_labels' general advice, pandas.factorize,
    numbers names in the order they first appear, which is not the model's order when the first text's label is
    its class 1, and every label would be read as the other class."""
    named = {str(k): v for k, v in (getattr(getattr(model, "config", None), "label2id", None) or {}).items()
             if str(k) != f"LABEL_{v}"}
    if not named or labels is None or isinstance(labels, str):
        return
    names = [label for label in list(labels)[:1000] if isinstance(label, str)]
    if not names:
        return
    unknown = sorted(set(names) - set(named))
    raise TypeError(f"labels must be class indices, got names such as {names[0]!r}; the model in {source} numbers "
                    f"its classes {named} (its config's label2id): pass label2id = AutoConfig.from_pretrained(model_path)"
                    ".label2id; labels = [label2id[name] for name in labels], not pandas.factorize, which numbers them "
                    "in the order they first appear" + (f" ({len(unknown)} names are not the model's, e.g. "
                                                        f"{unknown[0]!r})" if unknown else ""))


def _checked_max_length(max_length, model) -> int:
    """Where texts are cut: ``max_length``, or with None 128 tokens or the model's positions if fewer."""
    limit = max_positions(model)
    if max_length is None:
        return min(DEFAULT_MAX_LENGTH, limit or DEFAULT_MAX_LENGTH)
    positive_int(max_length, "max_length", 2)
    if limit is not None and max_length > limit:
        raise ValueError(f"max_length={max_length} is more than the model's {limit} positions; pass max_length={limit} "
                         "or less (or None for the longest the model takes, up to 128)")
    return max_length


def _check_aligned(texts, **others) -> None:
    """Texts, labels and attributes are read by position: pandas objects of one frame whose indexes
    differ (one filtered, the other not) would pair each text with another example's label."""
    if not isinstance(texts, pd.Series):
        return
    for name, other in others.items():
        if isinstance(other, (pd.Series, pd.DataFrame)) and not other.index.equals(texts.index):
            raise ValueError(f"texts and {name} are pandas objects with different indexes, and are read by position: "
                             f"each text would get another example's {name}. Align them (e.g. {name}.loc[texts.index]) "
                             "or pass plain lists")
