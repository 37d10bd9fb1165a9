"""Where a classifier reads its class: the token positions its logits depend on through its last hidden states.

An encoder reads [CLS] (a special token, whose share the cards keep apart from the words); a decoder classifier
(GPT-2, Llama) reads the last token of the text, which is a word. A component's mass there holds the read-out,
the computation that gathers the whole text into the class, as well as the word's own part: the last word ('.')
was the strongest on 50-75% of a decoder's cards. The two cannot be told apart (setting the word aside hid the
embedded task's marker words, which end their texts), so a card whose strongest word is the read-out says so.
:func:`read_out_positions` finds the position by asking the model, not by its family's name: the logits'
gradient with respect to the last hidden states is non-zero only where the head reads them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

#: A position is read out where its gradient is at least this share of the largest position's.
READ_OUT_SHARE = 1e-4


def read_out_positions(model: torch.nn.Module, inputs: Mapping, rows: list[torch.Tensor]) -> list[np.ndarray] | None:
    """(n_tokens,) bool per example: the positions (of ``rows[k]``, example k's real positions) where the model
    reads its class; None where it does not tell (no hidden states, hidden states of another length than the input
    (Funnel's pooled ones) or outside the logits' graph (XLNet's, copied from its time-major ones)), or reads every
    position (mean pooling: no one place to set aside). An encoder-decoder reads its decoder's states, whose
    position t holds token t − 1 (the input shifted right), as the token scores place them."""
    from .moves import differentiable

    config = getattr(model, "config", None)
    encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
    try:
        # every parameter differentiable: a body frozen under a trained head (a linear probe) has states autograd
        # does not track, and read as telling nothing
        with torch.enable_grad(), differentiable(list(model.parameters())):
            last, logits = _last_states_and_logits(model, inputs, encoder_decoder)
            if last is None or logits is None or last.shape[:2] != inputs["input_ids"].shape[:2]:
                return None
            # a fixed random mix of the classes: no class's gradient cancels another's
            mix = torch.randn(logits.shape[-1], generator=torch.Generator().manual_seed(0)).to(logits)
            gradient = _gradient((logits.float() * mix).sum(), last)
    except (TypeError, ValueError, RuntimeError):  # a forward of one's own that takes no output_hidden_states
        return None
    norms = gradient.float().norm(dim=-1).detach().cpu()  # (batch, positions)
    if encoder_decoder:
        norms = torch.nn.functional.pad(norms[:, 1:], (0, 1))  # position 0 reads the start token, no token of the text
    found = []
    for k, real in enumerate(rows):
        per_token = norms[k, real].numpy()
        read = per_token >= READ_OUT_SHARE * per_token.max() if per_token.max() > 0 else np.zeros_like(per_token, bool)
        found.append(read)
    if any(read.all() and read.size > 1 for read in found):
        return None
    return found


def _gradient(output: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    try:
        (gradient,) = torch.autograd.grad(output, last, retain_graph=True)
        return gradient
    except RuntimeError:
        # states returned as a view of those the head read (Longformer's, cut from its window's padding): the
        # gradient of the ones read, seen through the same view
        base = last._base
        if base is None or not base.is_contiguous():
            raise
        (gradient,) = torch.autograd.grad(output, base)
        return gradient.contiguous().as_strided(last.size(), last.stride(), last.storage_offset() - base.storage_offset())


def _last_states_and_logits(model, inputs: Mapping, encoder_decoder: bool):
    """The model's last hidden states (its decoder's, for an encoder-decoder) and its class logits; None for either
    it does not return."""
    if hasattr(model, "hidden_states"):
        # a language model read as a classifier returns class logits alone: the LM's states, its next token's logits
        out = model.hidden_states(**inputs)
        logits = getattr(out, "logits", None)
        logits = None if logits is None else logits[:, -1]
    else:
        out = model(**inputs, output_hidden_states=True)
        logits = getattr(out, "logits", None)
    states = getattr(out, "hidden_states", None)
    if encoder_decoder:  # T5Gemma's classifier returns its decoder's as hidden_states, BART's and T5's apart
        states = getattr(out, "decoder_hidden_states", None) or states
    last = states[-1] if isinstance(states, (tuple, list)) and states else None
    return (last if isinstance(last, torch.Tensor) and last.ndim == 3 else None), logits


def page_read_out(model: torch.nn.Module, inputs: Mapping, device=None) -> list[np.ndarray] | None:
    """:func:`read_out_positions` of a page's encoded texts (each example's real positions, as its token scores
    are), the model run as its PEFs were (eval mode, no autocast)."""
    from ..core.device import run_device
    from ..fisher.inputs import n_inputs, pef_mode, slice_inputs
    from .highlights import real_positions

    batch = slice_inputs(inputs, 0, n_inputs(inputs), run_device(model, device))
    with pef_mode(model):
        return read_out_positions(model, batch, [real_positions(batch, k) for k in range(n_inputs(batch))])
