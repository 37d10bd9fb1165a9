"""The prompt that reads a saved causal language model as a classifier, kept beside its weights.

``run_model(..., template=, label_words=)`` saves it in the run's ``model/`` folder, and
loading that folder (``workbench.models.lm.load_zero_shot``) rebuilds the same
:class:`~workbench.models.lm.ZeroShotClassifier`. Light (no torch): the explorer reads the
label words from it to name the classes of a run it has not loaded a model for.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Sequence
from pathlib import Path


#: In a saved model's folder: the prompt that reads its language model as a classifier.
PROMPT_FILE = "prompt.json"


def check_template(template) -> None:
    """A prompt template must have the ``{text}`` slot where each example's text goes, and no other
    (a brace meant literally is written twice, as in ``str.format``)."""
    if not isinstance(template, str):
        raise TypeError(f"the template must be a string with a '{{text}}' slot, got {type(template).__name__}")
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as err:
        raise ValueError(f"the template {template!r} is not a format string ({err}); write a literal brace twice: "
                         "'{{' or '}}'") from err
    if "text" not in fields:
        raise ValueError(f"the template {template!r} has no '{{text}}' slot for the example's text")
    others = sorted(set(fields) - {"text"})
    if others:
        raise ValueError(f"the template {template!r} has slots other than '{{text}}' ({others}), which nothing fills; "
                         "write a literal brace twice: '{{' or '}}'")


def save_prompt(folder: str | os.PathLike, template: str, label_words: Sequence[str], label_prefix: str = " ") -> None:
    """Record in a saved language model's ``folder`` the prompt that reads it as a classifier, so that
    :func:`workbench.models.lm.load_zero_shot` (and the workbench, for a run's ``model/``) rebuild the same classifier."""
    path = Path(folder, PROMPT_FILE)
    staging = path.with_name(f".{PROMPT_FILE}.tmp")  # renamed into place: a kill never leaves half a prompt
    staging.write_text(json.dumps({"template": template, "label_words": list(label_words), "label_prefix": label_prefix},
                                  indent=2))
    os.replace(staging, path)


def prompt_of(folder: str | os.PathLike) -> dict | None:
    """The prompt :func:`save_prompt` recorded in ``folder``, or None (a sequence classifier's folder)."""
    path = Path(folder, PROMPT_FILE)
    return json.loads(path.read_text()) if path.is_file() else None
