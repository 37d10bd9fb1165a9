"""How a model is named in what the package records (PEF stores, decompositions, messages)."""

from __future__ import annotations


def model_name(model) -> str:
    """The Hugging Face name or path the model was loaded from, else its class name."""
    config = getattr(model, "config", None)
    return str(getattr(config, "_name_or_path", "") or type(model).__name__)
