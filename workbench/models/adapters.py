"""PEFT (LoRA) adapter folders: a fine-tune saved as its adapters, read as the classifier it makes.

``model.save_pretrained(folder)`` of a ``peft`` model writes ``adapter_config.json`` and the adapters'
weights, and names its base model. The workbench loads the base offline as :func:`load_classifier`
loads any model, puts the adapters on it and merges them into its weights (``merge_and_unload``): the
PEFs are of the fine-tuned model as it computes, over its own parameters, and a run saves that merged
model in its ``model/`` folder, which then opens like any other. The PEFs of the adapters' parameters
alone come from ``peft.get_peft_model`` / ``PeftModel.from_pretrained`` and ``compute_pefs(...,
include="lora_")``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def is_adapter_folder(folder: str | os.PathLike) -> bool:
    return Path(folder, ADAPTER_CONFIG).is_file()


def load_adapter(folder: str | os.PathLike, *, with_tokenizer: bool = True):
    """(model, tokenizer) of the adapter folder ``folder``: its base classifier with the adapters merged in,
    in eval mode; the tokenizer saved beside the adapters, else the base model's."""
    from .loading import TOKENIZER_FILES, load_classifier, load_saved_tokenizer

    try:
        from peft import PeftModel
    except ImportError as error:
        raise ImportError(f"{folder} holds a PEFT adapter ({ADAPTER_CONFIG}), which needs peft to load: "
                          "pip install 'workbench[lora]' (or pip install peft)") from error
    folder = Path(folder)
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    if config.get("task_type") not in (None, "SEQ_CLS"):
        raise ValueError(f"{folder} holds a {config['task_type']} adapter: NPEFF reads a sequence classifier's "
                         "distribution over classes; save an adapter of task_type='SEQ_CLS', or merge this one "
                         "(merge_and_unload) and read the language model through run_model's template=")
    base = _base_of(folder, config)
    n_classes = _saved_head_classes(folder, base)
    # the adapter's own head replaces the base's, whose size may differ (a base with no head gets a new one)
    head = {"num_labels": n_classes, "ignore_mismatched_sizes": True} if n_classes else {}
    model, base_tokenizer = load_classifier(base, **head)
    model = PeftModel.from_pretrained(model, folder, is_trainable=False).merge_and_unload().eval()
    model.requires_grad_(True)  # peft froze every weight to load the adapters; the merged model's are its own
    if not with_tokenizer:
        return model
    has_tokenizer = any((folder / name).is_file() for name in TOKENIZER_FILES)
    return model, load_saved_tokenizer(folder) if has_tokenizer else base_tokenizer


def _base_of(folder: Path, config: dict) -> str | Path:
    """The base model the adapter names: a folder (relative to the adapter's, if not found from here), or a
    name :func:`load_classifier` resolves (the bundled MiniLM, the Hugging Face cache)."""
    base = config.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{folder / ADAPTER_CONFIG} names no base_model_name_or_path: set it to the base model's "
                         "folder (or name)")
    if not Path(base).expanduser().exists() and (folder / base).is_dir():
        return folder / base
    return base


def _saved_head_classes(folder: Path, base) -> int | None:
    """The classes of the head the adapter saved (``modules_to_save``), where they differ from the base's."""
    from .loading import resolve_source, saved_head_classes

    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        return None
    try:
        return saved_head_classes(resolve_source(base), weights, prefix="base_model.model.")
    except OSError:  # a base not found: load_classifier names it, with the ways out
        return None
