"""How does a component act through the network? A perturbation trace, layer by layer and token by token.

As the NPEFF authors' tracer viewer did for BERT: the weights move along a component's
unit direction, θ ± εĝ (:func:`.perturb.perturbation_direction`), and every layer's hidden
state at every token is compared with the unperturbed one. The change at layer l and
token t is the relative distance ‖h'_lt − h_lt‖ / ‖h_lt‖, averaged over the two signs.
Where along the depth, and at which tokens, the change appears says where the component's
parameters act on its examples; the baseline examples say how much of it is not specific.

- per example: a (layer × token) heatmap of the change;
- per set: the layer profile, the change averaged over the set's examples and their real
  tokens, for the component's top examples and a random baseline, and their ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..core.arguments import component_index
from ..fisher.checks import padding_changes_outputs
from ..fisher.inputs import groups_as_computed, pef_mode
from ..models.text import encode_texts, spelled_tokens
from .moves import perturbation_direction, perturbed
from .perturb import check_finite_outputs, check_step


@dataclass
class PerturbationTrace:
    """One component's trace: heatmaps per example and the layer profile per set."""

    component: int
    epsilon: float
    layers: list[str]  # "embeddings", "layer 0", ...: each layer's output, numbered as its parameters are
    examples: list[int]  # rows of the run's examples
    sets: list[str]  # "top" or "baseline", per example
    tokens: list[list[str]]  # per example, its real tokens
    heatmaps: list[np.ndarray]  # per example, (n_layers, n_tokens) relative change
    spelled: list[list[str]] | None = None  # per example, its tokens as the text spells them (no 'Ġ', '##')

    @property
    def profile(self) -> pd.DataFrame:
        """Index: layer; columns top, baseline (mean relative change over the set's tokens) and ratio."""
        means = {}
        for name in ("top", "baseline"):
            maps = [h for h, s in zip(self.heatmaps, self.sets) if s == name]
            means[name] = np.mean([h.mean(axis=1) for h in maps], axis=0) if maps else np.full(len(self.layers), np.nan)
        frame = pd.DataFrame(means, index=pd.Index(self.layers, name="layer"))
        frame["ratio"] = frame["top"] / frame["baseline"].where(frame["baseline"] > 0)
        return frame

    def heatmap(self, k: int) -> pd.DataFrame:
        """Example k's heatmap: index layers, columns its tokens as the text spells them (numbered, as
        tokens repeat)."""
        tokens = self.tokens[k] if self.spelled is None else self.spelled[k]
        columns = [f"{i}:{t}" for i, t in enumerate(tokens)]
        return pd.DataFrame(self.heatmaps[k], index=pd.Index(self.layers, name="layer"), columns=columns)

    def to_frame(self) -> pd.DataFrame:
        """Long format: one row per (example, layer, token)."""
        rows = []
        spelled = self.tokens if self.spelled is None else self.spelled
        for example, subset, tokens, words, heat in zip(self.examples, self.sets, self.tokens, spelled, self.heatmaps):
            for l, layer in enumerate(self.layers):
                for t, (token, word) in enumerate(zip(tokens, words)):
                    rows.append({"component": self.component, "epsilon": self.epsilon, "example": example,
                                 "set": subset, "layer": layer, "position": t, "token": token, "spelled": word,
                                 "change": float(heat[l, t])})
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        profile = self.profile
        peak = profile["ratio"].idxmax() if profile["ratio"].notna().any() else None
        return (f"PerturbationTrace(component={self.component}, epsilon={self.epsilon:g}, "
                f"{self.sets.count('top')} top and {self.sets.count('baseline')} baseline examples, "
                f"{len(self.layers)} layers, largest top/baseline ratio at {peak})")

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        from ..report import fragment
        from ..report.traces import trace_html

        return {"text/plain": repr(self), "text/html": fragment(trace_html(self))}


def _hidden_states(model, batch) -> dict[str, torch.Tensor]:
    """{layer name: (b, tokens, features)} of every hidden state with the input's token axis, in order:
    "embeddings", "layer 0", ... (the output of each layer, numbered as its parameters are, so that the
    trace and "where the component lives" name one layer alike: they were one apart); an encoder-decoder's
    as "encoder ..." then "decoder ..." (its decoder
    reads the input shifted right: position t holds token t − 1). States with another number of
    positions (Funnel's pooled layers) are left out."""
    # a language model read as a classifier returns class logits alone: its hidden states are the LM's
    out = model.hidden_states(**batch) if hasattr(model, "hidden_states") else model(**batch, output_hidden_states=True)
    if getattr(out, "hidden_states", None) is not None and _returns_decoder_states_alone(model):
        # T5Gemma's classifier returns its decoder's states as hidden_states: the encoder's from a pass of its own
        encoder = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                                      output_hidden_states=True)
        stacks = {"encoder ": encoder.hidden_states, "decoder ": out.hidden_states}
    elif getattr(out, "hidden_states", None) is not None:
        stacks = {"": out.hidden_states}
    elif getattr(out, "encoder_hidden_states", None) is not None:
        stacks = {"encoder ": out.encoder_hidden_states, "decoder ": getattr(out, "decoder_hidden_states", None) or ()}
    else:
        raise TypeError(f"{type(model).__name__} returns no hidden_states: the trace needs a model that accepts "
                        "output_hidden_states=True (Hugging Face models do)")
    length = batch["input_ids"].shape[1]
    return {f"{prefix}{'embeddings' if i == 0 else f'layer {i - 1}'}": state.detach().double()
            for prefix, states in stacks.items() for i, state in enumerate(states)
            if state.ndim == 3 and state.shape[1] == length}


def _returns_decoder_states_alone(model) -> bool:
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False)) and hasattr(model, "get_encoder")


def hidden_state_change(model, decomposition, component: int, inputs: dict, *, epsilon: float = 0.1,
                        max_sim: float | None = None) -> np.ndarray:
    """(n_examples, n_layers, n_tokens): relative change of every hidden state under θ ± εĝ, mean over the signs.

    ``inputs``: a tokenizer's output for the examples (a dict with ``input_ids`` and
    ``attention_mask``); padded positions are 0.
    """
    return _layer_changes(model, decomposition, component, inputs, epsilon, max_sim)[1]


def _layer_changes(model, decomposition, component: int, inputs: dict, epsilon: float,
                   max_sim: float | None) -> tuple[list[str], np.ndarray]:
    """(layer names, :func:`hidden_state_change`)."""
    check_step(epsilon, max_sim, zero_ok=True)  # ε = 0 changes nothing: a check of the trace itself
    direction = perturbation_direction(decomposition, component, max_sim)
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    mask = batch.get("attention_mask")
    with pef_mode(model), torch.no_grad():
        # As the PEFs were computed: each example as alone where padding changes the outputs (fisher.checks).
        groups = groups_as_computed(batch, padding_changes_outputs(model, batch, warn=False, remember=True))
        if len(groups) == 1:
            names, change = _relative_change(model, decomposition.layout_, direction, epsilon, batch)
        else:
            names, change = None, None
            for rows, part in groups:
                part_names, part_change = _relative_change(model, decomposition.layout_, direction, epsilon, part)
                if change is None:
                    names = part_names
                    change = part_change.new_zeros((len(mask), len(names), mask.shape[1]))
                layer = [part_names.index(n) for n in names]  # a short group may keep a layer others leave out
                for k, row in enumerate(rows.tolist()):
                    change[row][:, mask[row].bool()] = part_change[k][layer]
    if mask is not None:
        change = change * mask[:, None, :].to(change.dtype)
    return names, change.cpu().numpy()


def _relative_change(model, layout, direction: np.ndarray, epsilon: float, batch: dict) -> tuple[list[str], torch.Tensor]:
    """(layer names, (b, layers, tokens)): ‖h(θ ± εĝ) − h(θ)‖ / ‖h(θ)‖ at every hidden state, mean over the signs."""
    original = _hidden_states(model, batch)
    changes = []
    for sign in (1.0, -1.0):
        with perturbed(model, layout, sign * epsilon * direction):
            moved = _hidden_states(model, batch)
        for state in moved.values():
            check_finite_outputs(state, epsilon, "+" if sign > 0 else "-", "hidden states")
        changes.append(torch.stack([(moved[n] - o).norm(dim=-1) / o.norm(dim=-1).clamp_min(1e-12)
                                    for n, o in original.items()], dim=1))
    return list(original), (changes[0] + changes[1]) / 2


def perturbation_trace(model, tokenizer, decomposition, component: int, texts: Sequence[str],
                       top: Sequence[int], baseline: Sequence[int], *, epsilon: float = 0.1,
                       max_sim: float | None = None, max_length: int = 64) -> PerturbationTrace:
    """The trace of ``component`` on its top examples and baseline examples (indices into ``texts``)."""
    component = component_index(component, len(decomposition.components_))  # before the texts are encoded
    top, baseline = [int(i) for i in top], [int(i) for i in baseline]
    if not top:
        raise ValueError(f"component {component} has no top examples to trace")
    rows = top + baseline
    # character offsets: the tokens spelled as the text (or a prompt's template) spells them
    encoded = encode_texts(model, tokenizer, [texts[i] for i in rows], max_length, warn=False, spans=True)
    layers, change = _layer_changes(model, decomposition, component, encoded.inputs, epsilon, max_sim)
    mask = encoded.inputs["attention_mask"].bool()
    tokens, spelled, heatmaps = [], [], []
    for k in range(len(rows)):
        real = mask[k].numpy()
        tokens.append(tokenizer.convert_ids_to_tokens(encoded.inputs["input_ids"][k][mask[k]].tolist()))
        spelled.append(spelled_tokens(encoded.strings[k], tokens[-1], None if encoded.spans is None else encoded.spans[k]))
        heatmaps.append(change[k][:, real])
    return PerturbationTrace(int(component), float(epsilon), layers, rows, ["top"] * len(top) + ["baseline"] * len(baseline),
                             tokens, heatmaps, spelled)
