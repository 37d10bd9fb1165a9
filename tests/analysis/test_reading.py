"""Numbers for reading a component, on exact small cases: token shares, where a component lives,
definitions, the dashboard's pieces and reverse-lookup loadings."""

import re

import numpy as np
import pandas as pd
import pytest

from workbench.analysis.dashboard import coefficient_histogram, nearest_components, token_table
from workbench.analysis.definitions import definition, definitions_frame
from workbench.analysis.location import (
    MODULE_KINDS,
    layer_names,
    layer_of,
    location_summary,
    mass_by_location,
    mass_by_parameter,
    module_kind,
)
from workbench.analysis.lookup import loadings
from workbench.analysis.token_shares import strongest_word, token_shares
from workbench.core.params import HEAD_PATTERN, ParameterLayout
from workbench.models.architectures import available, build
from workbench.npeff import LrmNpeff


def test_token_shares_normalise_over_the_visible_tokens_only():
    # [CLS] carries most of the mass, as on MiniLM; the words' shares are tiny but their order is kept.
    scores = [0.60, 0.002, -0.001, 0.008, 0.05]
    special = [True, False, False, False, True]
    shares = token_shares(scores, special, head_share=0.341)
    np.testing.assert_allclose(shares.visible, [0.0, 0.002 / 0.011, -0.001 / 0.011, 0.008 / 0.011, 0.0])
    assert np.abs(shares.visible).sum() == pytest.approx(1.0)
    assert shares.special_share == pytest.approx(0.65) and shares.visible_share == pytest.approx(0.009)
    assert shares.visible_share + shares.special_share + shares.head_share == pytest.approx(1.0)
    assert strongest_word(shares.visible, shares.special) == [3]  # the largest visible share, never [CLS]


def test_the_strongest_word_is_the_one_shaded_strongest_also_when_it_cancels():
    """By the signed share, "ending" (0%) was underlined while "not" (-60%), the fully shaded word, cancelled."""
    shares = token_shares([0.3, 0.0, -0.006, 0.001, 0.003, 0.2], [True, False, False, False, False, True], 0.0)
    assert strongest_word(shares.visible, shares.special) == [2] and shares.visible[2] == pytest.approx(-0.6)


def test_token_shares_without_visible_mass_and_bad_flags():
    shares = token_shares([0.5, 0.0, 0.5], [True, False, True], 0.0)
    assert strongest_word(shares.visible, shares.special) == [] and not shares.visible.any()
    with pytest.raises(ValueError, match="one flag per token"):
        token_shares([0.1, 0.2], [True], 0.0)


@pytest.mark.parametrize("name, kind, layer", [
    ("bert.embeddings.word_embeddings.weight", "embeddings", "embeddings"),
    ("bert.embeddings.LayerNorm.weight", "LayerNorm", "embeddings"),
    ("bert.encoder.layer.3.attention.self.query.weight", "attention q", "layer 3"),
    ("bert.encoder.layer.3.attention.self.key.bias", "attention k", "layer 3"),
    ("bert.encoder.layer.3.attention.self.value.weight", "attention v", "layer 3"),
    ("bert.encoder.layer.3.attention.output.dense.weight", "attention o", "layer 3"),
    ("bert.encoder.layer.3.attention.output.LayerNorm.bias", "LayerNorm", "layer 3"),
    ("bert.encoder.layer.11.intermediate.dense.weight", "MLP in", "layer 11"),
    ("bert.encoder.layer.11.output.dense.weight", "MLP out", "layer 11"),
    ("bert.pooler.dense.weight", "pooler", "head"),
    ("classifier.weight", "classifier", "head"),
    ("transformer.h.2.attn.c_attn.weight", "attention qkv", "layer 2"),
    ("transformer.h.2.attn.c_proj.weight", "attention o", "layer 2"),
    ("transformer.h.2.mlp.c_fc.weight", "MLP in", "layer 2"),
    ("transformer.h.2.mlp.c_proj.weight", "MLP out", "layer 2"),
    ("transformer.wte.weight", "embeddings", "embeddings"),
    ("model.layers.1.self_attn.k_proj.weight", "attention k", "layer 1"),
    ("model.layers.1.mlp.down_proj.weight", "MLP out", "layer 1"),
    ("something.else", "other", "other"),
    ("backbone.layers.0.mixer.out_proj.weight", "state space", "layer 0"),  # Mamba's: no attention o
    ("shared.weight", "embeddings", "embeddings"),  # T5's token table
    ("classification_head.dense.weight", "classifier", "head"),
    # families whose layers were all "other" (the audit of 77 families built from configs)
    ("classifier.out_proj.weight", "classifier", "head"),  # RoBERTa's head: was attention o, outside the layers
    ("transformer.attentions.1.q_lin.weight", "attention q", "layer 1"),  # XLM, Flaubert
    ("transformer.ffns.0.lin2.weight", "MLP out", "layer 0"),
    ("transformer.layer_norm2.1.weight", "LayerNorm", "layer 1"),
    ("transformer.layer_norm_emb.weight", "LayerNorm", "embeddings"),
    ("sequence_summary.summary.weight", "classifier", "head"),
    ("transformer.h.3.mlp.fc_in.weight", "MLP in", "layer 3"),  # GPT-J
    ("transformer.h.3.mlp.fc_out.weight", "MLP out", "layer 3"),
    ("transformer.h.0.multi_head_attention.Wq.weight", "attention q", "layer 0"),  # CTRL
    ("transformer.h.0.ffn.0.weight", "MLP in", "layer 0"),
    ("transformer.h.0.ffn.2.bias", "MLP out", "layer 0"),
    ("transformer.w.weight", "embeddings", "embeddings"),
    ("mobilebert.encoder.layer.2.ffn.0.output.dense.weight", "MLP out", "layer 2"),  # not CTRL's ffn.0
    ("model.layers.4.self_attn.q_a_proj.weight", "attention q", "layer 4"),  # DeepSeek's latent attention
    ("model.layers.4.self_attn.kv_a_proj_with_mqa.weight", "attention qkv", "layer 4"),
    ("model.layers.2.attn.Wo.weight", "attention o", "layer 2"),  # ModernBERT
    ("model.layers.2.mlp.Wi.weight", "MLP in", "layer 2"),
    ("model.layers.2.mlp.Wo.weight", "MLP out", "layer 2"),
    ("model.layers.1.mlp.gate.weight", "router", "layer 1"),  # Mixtral, Qwen-MoE
    ("model.layers.1.mlp.experts.down_proj", "MLP out", "layer 1"),
    ("encoder.block.0.layer.1.DenseReluDense.wi_0.weight", "MLP in", "layer 0"),  # T5
    ("encoder.block.0.layer.1.DenseReluDense.wo.weight", "MLP out", "layer 0"),
    ("encoder.block.0.layer.0.SelfAttention.o.weight", "attention o", "layer 0"),
    ("gpt_neox.layers.5.attention.dense.weight", "attention o", "layer 5"),
    ("model.layers.0.linear_attn.in_proj_qkvz.weight", "state space", "layer 0"),  # Qwen3-Next's gated delta-net
    ("albert.encoder.albert_layer_groups.0.albert_layers.0.ffn_output.weight", "MLP out", "layer 0"),
    ("score.out_proj.weight", "classifier", "head"),  # T5Gemma's head: was attention o, outside the layers
    ("dense.weight", "classifier", "head"),  # EuroBERT's head dense
    # fused projections were read as their first or last part ("query", "v_proj")
    ("model.layers.0.self_attn.qkv_proj.weight", "attention qkv", "layer 0"),  # Phi3
    ("gpt_neox.layers.1.attention.query_key_value.weight", "attention qkv", "layer 1"),  # GPT-NeoX, BLOOM, Falcon
    ("logits_proj.weight", "classifier", "head"),  # XLNet
    ("transformer.layer.1.ff.layer_1.weight", "MLP in", "layer 1"),
    ("transformer.layer.1.ff.layer_2.bias", "MLP out", "layer 1"),
    ("funnel.encoder.blocks.0.0.attention.q_head.weight", "attention q", "layer 0"),  # Funnel
    ("funnel.encoder.blocks.0.0.attention.post_proj.weight", "attention o", "layer 0"),
    ("funnel.encoder.blocks.0.0.ffn.linear_2.weight", "MLP out", "layer 0"),
    ("transformer.encoder.layers.1.post_attention.conv1d.weight", "attention o", "layer 1"),  # SqueezeBERT
    ("transformer.encoder.layers.1.output.conv1d.weight", "MLP out", "layer 1"),
    ("deberta.encoder.layer.0.attention.self.pos_proj.weight", "attention k", "layer 0"),  # DeBERTa's c2p keys
])
def test_parameter_names_map_to_module_kinds_and_layers(name, kind, layer):
    assert module_kind(name) == kind and kind in MODULE_KINDS
    assert layer_of(name) == layer


# Inside the layers, what no module kind names: relative position tables and biases, ConvBERT's
# convolutions, MobileBERT's bottlenecks; outside them, ESM's unused contact head
_NAMED_BY_NO_KIND = r"relative_attention_bias|rel_attn\.r(_[rsw]_bias)?$|r_kernel|r_[rsw]_bias|conv|bottleneck|contact_head"


@pytest.mark.parametrize("family", available())
def test_every_family_s_parameters_are_named_by_a_kind_and_a_layer(family):
    """Over the architecture matrix: a fused projection is "attention qkv" (GPT-NeoX's, BLOOM's and
    Falcon's query_key_value were "attention q", Phi3's qkv_proj "attention v"), the head that
    HEAD_PATTERN leaves out is the head, and nothing else is "other" (XLNet's and Funnel's
    feed-forward layers, Funnel's attention and XLNet's logits_proj were)."""
    names = [n for n, _ in build(family).named_parameters()]
    for name, layer in zip(names, layer_names(names)):
        kind = module_kind(name)
        if re.search(r"qkv|query_key_value|c_attn", name, re.IGNORECASE):
            assert kind == "attention qkv", name
        if re.search(HEAD_PATTERN, name) and "pooler" not in name:
            assert layer == "head" and kind in ("classifier", "LayerNorm"), name  # ModernBERT's head.norm
        if "other" in (kind, layer):
            assert re.search(_NAMED_BY_NO_KIND, name), (name, kind, layer)


def test_deberta_v2_s_encoder_norm_is_read_with_its_relative_position_embeddings():
    names = ["deberta.encoder.rel_embeddings.weight", "deberta.encoder.LayerNorm.weight",
             "deberta.encoder.layer.1.output.LayerNorm.weight", "bert.encoder.LayerNorm.weight"]
    assert layer_names(names) == ["embeddings", "embeddings", "layer 1", "head"]


def planted_decomposition():
    """Two components over four parameters whose mass sits exactly where it was planted."""
    layout = ParameterLayout(("bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.attention.self.query.weight",
                              "bert.encoder.layer.1.output.dense.weight", "classifier.weight"), ((2,), (3,), (2,), (1,)))
    kept = np.array([0, 1, 2, 4, 5, 7], dtype=np.int64)  # columns 3 and 6 pruned
    G = np.zeros((2, len(kept)), dtype=np.float32)
    G[0, [0, 1]] = [3.0, 4.0]  # ‖·‖² 25 in the embeddings
    G[0, 2] = 5.0  # 25 in layer 0's query
    G[0, 5] = 0.0
    G[1, 5] = 2.0  # all in the classifier
    d = LrmNpeff(2)
    d.G_, d.W_, d.kept_columns_, d.layout_, d.n_parameters_ = G, np.ones((3, 2), np.float32), kept, layout, 8
    return d


def test_mass_by_location_is_the_exact_split_of_the_squared_norm():
    d = planted_decomposition()
    shares = mass_by_parameter(d)
    np.testing.assert_allclose(shares.to_numpy(), [[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    location = mass_by_location(d, 0)
    assert list(location.index) == ["embeddings", "layer 0", "layer 1", "head"]  # network order
    assert location.loc["embeddings", "embeddings"] == pytest.approx(0.5)
    assert location.loc["layer 0", "attention q"] == pytest.approx(0.5)
    assert location.to_numpy().sum() == pytest.approx(1.0)
    summary = location_summary(d)
    assert summary.loc[1, "main_kind"] == "classifier" and summary.loc[1, "main_layer_mass"] == pytest.approx(1.0)


def test_every_column_of_a_component_table_has_a_definition():
    columns = ["component", "n_top", "g_norm", "mass", "label", "label_purity", "prediction", "prediction_purity",
               "accuracy", "strategy_purity", "strategy_entropy"]
    frame = definitions_frame(columns)
    assert list(frame.index) == columns
    assert "strategy" in definition("strategy_entropy") and "multi-factor" in definition("strategy_entropy")
    assert definition("no such column") is None


def test_coefficient_histogram_counts_every_example_once():
    values = np.array([0, 0, 0, 0.5, 1.0, 1.0, 2.0])
    bins, n_zero = coefficient_histogram(values, n_bins=3)
    assert n_zero == 3 and bins["count"].sum() == 4
    assert bins["left"].iloc[0] == 0.5 and bins["right"].iloc[-1] == 2.0
    empty, n_zero = coefficient_histogram(np.zeros(5))
    assert n_zero == 5 and empty.empty


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_coefficients_and_components_are_refused_as_w_is(bad):
    """coefficient_histogram dropped a NaN from both the bins and the zeros without a word (an inf failed in
    numpy), and component_table read a NaN or inf in G as g_norm inf and mass NaN, while W was checked."""
    from workbench.analysis import component_table

    with pytest.raises(ValueError, match="coefficients must be finite, as a fit's W is; 1 of 4 are NaN or infinite"):
        coefficient_histogram(np.array([0, 0.5, bad, 1.0]))
    W, G = np.ones((4, 3)), np.ones((3, 5))
    G[1, 2] = bad
    with pytest.raises(ValueError, match=r"components must be finite; 1 of 3 components \(e\.g\. \[1\]\) hold NaN or "
                                         "infinite entries"):
        component_table(W, G, n_top=2)
    assert np.isfinite(component_table(W, np.ones((3, 5)), n_top=2)[["g_norm", "mass"]].to_numpy()).all()


def test_nearest_components_by_absolute_cosine():
    G = np.array([[1.0, 0, 0], [-2.0, 0.1, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]])
    near = nearest_components(G, 0, n=3)
    assert list(near.index) == [1, 4, 2]  # the opposite direction is nearest; the zero row never
    assert near["cos"].iloc[0] == pytest.approx(2 / np.hypot(2, 0.1))
    assert near["cos"].iloc[1] == pytest.approx(1 / np.sqrt(2)) and near["cos"].iloc[2] == pytest.approx(0.0)


def test_top_tokens_aggregate_over_examples():
    examples = [(["[CLS]", "the", "plot", "was", "dull", "dull"], np.array([0, 0.1, 0.0, 0.1, 0.5, 0.3])),
                (["[CLS]", "dull", "music"], np.array([0, 0.6, -0.4]))]
    tokens = token_table(examples, n=3)
    # by |total|: "music" cancels the component (-0.4) and comes before "the" and "was" (0.1 each) that carry
    # a little of it; "plot" (0) and specials never counted
    assert list(tokens.index) == ["dull", "music", "the"]
    assert tokens.loc["music", "total"] == pytest.approx(-0.4)
    assert tokens.loc["dull", "count"] == 2 and tokens.loc["dull", "mean share"] == pytest.approx(0.7)
    assert tokens.loc["dull", "total"] == pytest.approx(1.4)


def test_loadings_are_sorted_by_scaled_coefficient_with_shares():
    G = np.array([[1.0, 0], [0, 3.0], [2.0, 0]])
    table = loadings([0.5, 0.2, 0.0], G, kind="lrm")
    assert list(table.index) == [1, 0]  # 0.2 × 9 = 1.8 beats 0.5 × 1; the zero coefficient is left out
    np.testing.assert_allclose(table["scaled"], [1.8, 0.5])
    np.testing.assert_allclose(table["share"], [1.8 / 2.3, 0.5 / 2.3])
    assert isinstance(table, pd.DataFrame) and table.index.name == "component"


def test_the_strongest_word_is_never_a_special_token():
    """Every word's share negative: the special tokens' 0 must not win, the word of the largest |share| does."""
    shares = token_shares([0.5, -0.01, -0.002, -0.02, 0.3], [True, False, False, False, True], 0.2)
    assert strongest_word(shares.visible, shares.special) == [3]


def test_tokens_are_shown_as_the_text_spells_them():
    """Byte-level BPE marks a leading space with 'Ġ': the dashboard's top tokens show the words."""
    from workbench.app.results import HighlightedExample

    example = HighlightedExample(0, 0, "good film", 1, 1, 0.5, tokens=["<s>", "good", "Ġfilm"],
                                 spans=[(0, 0), (0, 4), (4, 9)])
    assert example.shown_tokens == ["<s>", "good", "film"]
    # SentencePiece's lone '▁' before punctuation is whitespace alone: shown as such, not as the mark
    spaced = HighlightedExample(0, 0, "good .", 1, 1, 0.5, tokens=["▁good", "▁", "."], spans=[(0, 4), (4, 5), (5, 6)])
    assert spaced.shown_tokens == ["good", "␣", "."]
    # ALBERT's and T5's tokenizers give the lone '▁' the next character's span: it read 'w', 'w', 'as', and was the
    # strongest "word" of every component of a run; it is whitespace, and never the strongest word
    albert = HighlightedExample(0, 0, "the music was", 1, 1, 0.5, tokens=["▁the", "▁music", "▁", "w", "as"],
                                spans=[(0, 3), (4, 9), (10, 11), (10, 11), (11, 13)],
                                visible=np.array([0.1, 0.2, -0.5, 0.1, 0.1]), special=np.zeros(5, bool))
    assert albert.shown_tokens == ["the", "music", "␣", "w", "as"]
    assert albert.strongest_positions == [1]


def test_the_strongest_word_and_its_tooltip_are_spelled_as_the_text_spells_them():
    """The row's strongest word (text, to_frame, the checks' table) and every word's tooltip in the report were the
    tokenizer's pieces: 'Ġfilm', '▁film', '##m'; and the shading took in the space before each such word."""
    import html as html_module
    import re

    from workbench import report
    from workbench.app.results import HighlightedExample

    example = HighlightedExample(0, 0, "good film", 1, 1, 0.5, tokens=["<s>", "good", "Ġfilm"],
                                 spans=[(0, 0), (0, 4), (4, 9)], visible=np.array([0.0, 0.2, 0.8]),
                                 special=np.array([True, False, False]))
    assert example.strongest_token == "film"
    page = report.highlighted_text_html(example.text, example.tokens, example.visible, spans=example.spans,
                                        special=example.special, strongest=[2])
    titles = [html_module.unescape(t) for t in re.findall(r'title="([^"]*)"', page)]
    assert [t.split(":")[0] for t in titles] == ["good", "film"]
    assert re.search(r'good</span> (<mark>)?<span class="[^"]*strongest[^"]*"[^>]*>film</span>', page), page
    assert html_module.unescape(re.sub(r"<[^>]+>", "", page)) == "good film"


def test_the_strongest_word_is_a_whole_word_named_underlined_and_marked_whole():
    """MiniLM cuts "blick" into 'b' '##lick': the strongest word read 'lick' (its larger piece, beside "the"
    piece), and only 'lick' was marked. A word's share is its pieces' sum."""
    import re

    from workbench import report
    from workbench.app.results import HighlightedExample, TopExamplesPage

    example = HighlightedExample(0, 0, "the blick", 1, 1, 0.5, tokens=["[CLS]", "the", "b", "##lick", "[SEP]"],
                                 spans=[(0, 0), (0, 3), (4, 5), (5, 9), (0, 0)],
                                 visible=np.array([0.0, 0.12, 0.1, 0.25, 0.0]), special=[True, False, False, False, True],
                                 words=[None, 0, 1, 1, None])
    assert example.strongest_positions == [2, 3] and example.strongest_token == "blick"
    assert example.strongest_share == pytest.approx(0.35)  # 'lick' alone: 0.25
    card = report.example_html(example)
    assert "strongest word <b><bdi>blick</bdi></b> (+35% of the words' share)" in card
    assert card.count(' strongest"') == 2  # both pieces underlined
    # 'b' alone is shaded lightly (0.1 of 0.25), yet it is marked with '##lick': the word is one mark
    marked = [re.sub(r"<[^>]+>", "", m) for m in re.findall(r"<mark>(.*?)</mark>", card)]
    assert marked == ["blick"]
    row = TopExamplesPage(0, [example], 0, 1, 1).to_frame().iloc[0]
    assert row["strongest_token"] == "blick" and row["strongest_share"] == pytest.approx(0.35)
    # without word ids (a slow tokenizer), pieces are read one by one, as before
    pieces = HighlightedExample(0, 0, "the blick", 1, 1, 0.5, tokens=example.tokens, spans=example.spans,
                                visible=example.visible, special=example.special)
    assert pieces.strongest_positions == [3] and pieces.strongest_token == "lick"


def test_a_component_without_examples_and_a_run_of_one_component_say_so():
    """A component no example loads on read "examples 0-0 of 0" and was named "mixed"; a run of one component
    showed an empty table of its nearest components."""
    from workbench import report
    from workbench.analysis.labels import component_label
    from workbench.app.results import TopExamplesPage

    row = pd.Series({"n_top": 0, "label": np.nan, "label_purity": np.nan})
    assert component_label(row, ["label"]) == "no examples"
    page = TopExamplesPage(component=3, examples=[], page=0, page_size=10, n_ranked=0)
    assert page.caption() == "component 3: no example has a positive coefficient on it"
    dashboard = type("Dashboard", (), {"top_tokens": None, "nearest": pd.DataFrame(columns=["cos"]), "definitions": {},
                                       "notes": []})()
    assert "No other component" in report.dashboard_tables_html(dashboard)


def test_an_encoder_decoder_s_stacks_are_told_apart_as_the_trace_names_them():
    """BART's and T5's layers 0 of the encoder and of the decoder were one row of 'where the component lives',
    and T5's encoder final norm was 'head'; the trace names 'encoder layer 0' and 'decoder layer 0'."""
    from workbench.analysis.location import _layer_order, layer_names

    names = ["shared.weight", "encoder.block.0.layer.0.SelfAttention.q.weight", "encoder.final_layer_norm.weight",
             "decoder.block.0.layer.1.EncDecAttention.k.weight", "decoder.final_layer_norm.weight",
             "classification_head.out_proj.weight"]
    layers = layer_names(names)
    assert layers == ["embeddings", "encoder layer 0", "encoder final norm", "decoder layer 0", "decoder final norm",
                      "head"]
    assert sorted(layers, key=_layer_order) == layers
    assert layer_names(["bert.encoder.layer.0.output.dense.weight"]) == ["layer 0"]  # one stack: no prefix
