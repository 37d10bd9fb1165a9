"""The arguments :class:`workbench.app.explore.RunExplorer` is opened with, checked before it reads the run."""

from __future__ import annotations


def check_model_and_tokenizer(model, tokenizer) -> None:
    """A model of the user's, with its tokenizer; or neither, for the run's own ``model/`` folder, which holds the
    tokenizer its PEFs were computed with. A tokenizer alone was dropped without a word for that folder's."""
    if model is not None and not callable(getattr(model, "named_parameters", None)):
        raise TypeError(f"model must be the run's model (a torch.nn.Module), got {type(model).__name__}")
    if tokenizer is not None and model is None:
        raise ValueError("tokenizer= was given without model=: without a model the explorer reads the run's model/ "
                         "folder, with the tokenizer saved there (the one its PEFs were computed with); pass model= "
                         "with it (a run whose model lives elsewhere), or leave tokenizer out")
