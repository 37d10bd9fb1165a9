"""Where a component lives in the network: its mass by layer and by module kind.

A component's direction g_j spans the parameters the PEFs kept. Its squared norm splits
exactly over them: ‖g_j‖² = Σ_parameters Σ_entries g², so each parameter holds a share of
it (the shares sum to 1). Grouping the parameters by transformer layer and by the kind of
module they belong to (embeddings, attention q/k/v/o, MLP in/out, LayerNorm, pooler,
classifier) says where the component acts: a component whose mass sits in the classifier
is about the head, not about the tokens (the question of issue 17 on MiniLM).

The kind and layer come from the parameter's name, checked against every text classifier family
of transformers 5.25 that builds from a small config (about 100: BERT, GPT-2, LLaMA, T5, XLM,
GPT-J, CTRL, ModernBERT, DeepSeek's latent attention, mixtures of experts' routers, ...); what
no rule names (convolutions, relative position tables, attention sinks) is ``other``.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

#: Module kinds in display order (a chart's legend, a frame's columns).
MODULE_KINDS = ("embeddings", "attention q", "attention k", "attention v", "attention qkv", "attention o",
                "MLP in", "MLP out", "router", "state space", "LayerNorm", "pooler", "classifier", "other")

# First match wins, so the specific names come before the general ones: a LayerNorm inside
# the embeddings is a LayerNorm, and BERT's attention.output.dense is attention o, not MLP out.
# Names are matched lowered (CTRL's Wq is wq, T5's SelfAttention.o is selfattention.o).
_KIND_RULES = (
    ("LayerNorm", r"layernorm|layer_norm|(^|\.)ln(_|\.|$)|(^|\.)norm|_norm\b"),
    ("pooler", r"pooler"),
    # BART's and T5's head (its out_proj is no attention's), RoBERTa's classifier.dense/out_proj, XLM's
    # sequence_summary, a head's dense at the top of the model (EuroBERT's), a decoder's score head with its
    # own out_proj (T5Gemma's score.out_proj)
    ("classifier", r"classification_head|(^|\.)classifier\.|sequence_summary|logits_proj|^dense\.|(^|\.)score\."),
    # XLNet's mask_emb
    ("embeddings", r"embed|_emb\b|(^|\.)wte\b|(^|\.)wpe\b|(^|\.)shared\.weight$|^transformer\.w\.weight$"),
    # Mamba's mixer (in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj) and gated delta-nets' linear
    # attention: no softmax attention, though their out_proj is named as attention's are
    ("state space", r"(^|\.)mixer\.|linear_attn\."),
    # a mixture of experts' router: which experts see each token
    ("router", r"router|(^|\.)gate\.(weight|bias|wg)|shared_expert_gate"),
    # fused projections first: query_key_value holds "query" and "value", qkv_proj holds "v_proj"
    ("attention qkv", r"c_attn|qkv|query_key_value|kv_a_proj|kv_b_proj|attention\.self\.in_proj"),
    ("attention q", r"query|q_proj|q_bias|q_a_proj|q_b_proj|\.q\b|q_lin|(^|\.)wq\b|attention\.experts\.input_linear|q_head"),
    # DeBERTa's pos_proj: the relative positions' key projection
    ("attention k", r"(^|[._])key\b|key_proj|key_global|k_proj|\.k\b|k_lin|(^|\.)wk\b|k_head|(^|\.)pos_proj"),
    ("attention v", r"value|v_proj|v_bias|\.v\b|v_lin|(^|\.)wv\b|v_head"),
    # Funnel's post_proj, SqueezeBERT's post_attention.conv1d
    ("attention o", r"attention\.output\.dense|attn\.c_proj|o_proj|out_proj|out_lin|attn.*dense|attention\.dense"
                    r"|attention\.o\b|attn\.o\b|attn\.wo\b|attn\.output\b|attention\.experts\.output_linear"
                    r"|attention\.post_proj|post_attention\.conv1d"),
    # XLNet's ff.layer_1 / layer_2, Funnel's ffn.linear_1 / linear_2, SqueezeBERT's output.conv1d
    ("MLP in", r"intermediate|c_fc|fc1|fc_in|up_proj|gate_proj|dense_h_to_4h|lin1|(^|\.)wi(_\d)?\b|(^|\.)ffn\.0\.(weight|bias)$"
               r"|(^|\.)ffn\.(weight|bias)$|mlp\.input_linear|(^|\.)ff\.layer_1|ffn\.linear_1"),
    ("MLP out", r"output\.dense|mlp\.c_proj|fc2|fc_out|down_proj|dense_4h_to_h|lin2|(^|\.)wo\b|(^|\.)ffn\.2\.(weight|bias)$"
                r"|ffn_output|mlp\.output_linear|(^|\.)mlp\.bias$|(^|\.)ff\.layer_2|ffn\.linear_2|(^|\.)output\.conv1d"),
    ("classifier", r"(^|\.)score\b|lm_head|(^|\.)head\b|pre_classifier|classifier"),
)
# the index in a stack of layers: BERT's layer.N, LLaMA's layers.N, GPT-2's h.N, T5's block.N, XLM's
# attentions.N / ffns.N / layer_norm1.N (one module list per kind), ALBERT's albert_layers.N (shared weights)
_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h|blocks?|attentions|ffns|layer_norm[12]|albert_layers)\.(\d+)(?:\.|$)")
_STACK = re.compile(r"(?:^|\.)(encoder|decoder)\.")


def module_kind(name: str) -> str:
    """The kind of module the parameter ``name`` belongs to (one of :data:`MODULE_KINDS`)."""
    lowered = name.lower()
    for kind, pattern in _KIND_RULES:
        if re.search(pattern, lowered):
            return kind
    return "other"


def layer_of(name: str, stacks: bool = False) -> str:
    """``"layer N"`` for a parameter inside transformer layer N; ``"embeddings"``, ``"head"`` (pooler,
    classifier, final norm) or ``"other"`` outside the layers. With ``stacks`` (a model of an encoder
    and a decoder), ``"encoder layer N"`` and ``"decoder layer N"``, and each stack's final norm, as the
    trace names them: the layers 0 of both stacks were one row, and T5's encoder norm was "head"."""
    stack = _STACK.search(name) if stacks else None
    match = _LAYER.search(name)
    if match:
        return f"{stack.group(1) + ' ' if stack else ''}layer {int(match.group(1))}"
    kind = module_kind(name)
    if kind == "embeddings" or re.search(r"embed|_emb\b", name.lower()):  # XLM's layer_norm_emb too
        return "embeddings"
    if stack and kind == "LayerNorm":
        return f"{stack.group(1)} final norm"
    if kind in ("pooler", "classifier", "LayerNorm"):
        return "head"
    return "other"


def layer_names(names) -> list[str]:
    """:func:`layer_of` of each parameter name, the stacks told apart where the model has a decoder stack."""
    names = list(names)
    stacks = any(_LAYER.search(n) and re.search(r"(?:^|\.)decoder\.", n) for n in names)
    # DeBERTa-v2's encoder.LayerNorm normalises its relative position embeddings, not the top layer's output
    relative_tables = {n.rsplit(".rel_embeddings.", 1)[0] for n in names if ".rel_embeddings." in n}
    return ["embeddings" if n.rsplit(".LayerNorm.", 1)[0] in relative_tables else layer_of(n, stacks) for n in names]


def _layer_order(layer: str) -> tuple:
    stack, _, rest = layer.partition(" ") if layer.startswith(("encoder ", "decoder ")) else ("", "", layer)
    group = {"": 1, "encoder": 1, "decoder": 2}[stack]
    if rest == "embeddings":
        return (0, 0)
    if rest.startswith("layer "):
        return (group, int(rest.split()[1]))
    if rest == "final norm":
        return (group, float("inf"))
    return (3, 0) if rest == "head" else (4, 0)


def mass_by_parameter(decomposition) -> pd.DataFrame:
    """(n_components, n_parameters): each component's share of its squared norm in each parameter
    of the decomposition's layout (rows sum to 1; a zero component's row is 0)."""
    layout = decomposition.layout_
    G = np.asarray(decomposition.components_, dtype=np.float64)
    kept = np.asarray(decomposition.kept_columns_, dtype=np.int64)
    # Which parameter each kept column belongs to: the last offset at or before it.
    owner = np.searchsorted(layout.offsets, kept, side="right") - 1
    squares = np.zeros((G.shape[0], len(layout.names)))
    np.add.at(squares.T, owner, (G ** 2).T)
    totals = squares.sum(axis=1, keepdims=True)
    shares = np.divide(squares, totals, out=np.zeros_like(squares), where=totals > 0)
    return pd.DataFrame(shares, columns=list(layout.names)).rename_axis(index="component", columns="parameter")


def location_frame(decomposition, component: int) -> pd.DataFrame:
    """One row per parameter of ``component``: parameter, layer, kind and mass (share of ‖g‖²), largest first."""
    shares = mass_by_parameter(decomposition)
    if not 0 <= int(component) < len(shares):
        raise IndexError(f"component must be from 0 to {len(shares) - 1}, got {component}")
    row = shares.iloc[int(component)]
    frame = pd.DataFrame({"parameter": row.index, "layer": layer_names(row.index),
                          "kind": [module_kind(n) for n in row.index], "mass": row.to_numpy()})
    return frame.sort_values("mass", ascending=False, kind="stable").reset_index(drop=True)


def mass_by_location(decomposition, component: int) -> pd.DataFrame:
    """``component``'s mass by layer (rows, network order: embeddings, layer 0, ..., head) and module
    kind (columns, :data:`MODULE_KINDS` order, kinds the model lacks left out); the cells sum to 1."""
    frame = location_frame(decomposition, component)
    table = frame.pivot_table(index="layer", columns="kind", values="mass", aggfunc="sum", fill_value=0.0)
    table = table.reindex(sorted(table.index, key=_layer_order))
    return table[[k for k in MODULE_KINDS if k in table.columns]]


def location_summary(decomposition) -> pd.DataFrame:
    """Per component: the module kind and the layer holding most of its mass, and those shares."""
    shares = mass_by_parameter(decomposition)
    kinds = shares.T.groupby([module_kind(n) for n in shares.columns]).sum().T
    layers = shares.T.groupby(layer_names(shares.columns)).sum().T
    return pd.DataFrame({
        "main_kind": kinds.idxmax(axis=1), "main_kind_mass": kinds.max(axis=1),
        "main_layer": layers.idxmax(axis=1), "main_layer_mass": layers.max(axis=1),
    }).rename_axis("component")
