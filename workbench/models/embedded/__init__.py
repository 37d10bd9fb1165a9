"""The embedded default: a synthetic sentiment task with known strategies and a model trained on it.

Everything here is built offline, so the workbench runs end to end without downloading
a model or a data set.
"""

from .model import (
    ANALYSIS_SEED_OFFSET,
    RECIPES,
    Recipe,
    build_tokenizer,
    cache_root,
    default_model,
    evaluate,
    load_default_model,
    predict,
    tokenize,
    train_default_model,
)
from .task import (
    DEFAULT_MIX,
    MARKER_WORDS,
    MULTI_FACTOR,
    NEGATIVE_WORDS,
    POSITIVE_WORDS,
    STRATEGIES,
    TASK_VERSION,
    deciding_token_positions,
    make_examples,
    vocabulary,
)

__all__ = [
    "ANALYSIS_SEED_OFFSET",
    "RECIPES",
    "Recipe",
    "build_tokenizer",
    "cache_root",
    "default_model",
    "evaluate",
    "load_default_model",
    "predict",
    "tokenize",
    "train_default_model",
    "DEFAULT_MIX",
    "MARKER_WORDS",
    "MULTI_FACTOR",
    "NEGATIVE_WORDS",
    "POSITIVE_WORDS",
    "STRATEGIES",
    "TASK_VERSION",
    "deciding_token_positions",
    "make_examples",
    "vocabulary",
]
