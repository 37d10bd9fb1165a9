"""Parameters without a per-example rule: torch.func's per-example gradients for the whole
batch, exact against the loop, and the loop again wherever vmap cannot run the model."""

import logging
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from workbench import compute_pefs
from workbench.bench.architectures import max_relative_error
from workbench.fisher import PefConfig, eval_mode, split_labels
from workbench.fisher.gradients import loop_gradients, slot_classes
from workbench.fisher.inputs import class_logits
from workbench.fisher.transforms import per_example_gradients
from workbench.models.architectures import available, build, example_inputs
from workbench.runner import PefRun

# Relative-position parameters used without a per-example axis: DeBERTa's rel_embeddings
# (read without calling the layer), v1's q_bias/v_bias, MPNet's relative attention bias
TRANSFORMED = [name for name in ("DeBERTa", "DeBERTa-v2/v3", "MPNet") if name in available()]


def fast_and_loop(model, inputs, batch_size: int):
    """Every entry of the PEFs by the fast path and by the plain loop (which logs no warning)."""
    common = dict(n_values=None, batch_size=batch_size, progress=False)
    return compute_pefs(model, inputs, **common).dense(), compute_pefs(model, inputs, method="loop", **common).dense()


def checked_plan(model, inputs, **config):
    inputs, labels = split_labels(inputs, None)
    run = PefRun.prepare(model, inputs, labels, PefConfig(n_values=1, batch_size=4, **config), torch.device("cpu"))
    with eval_mode(model):
        next(run.chunks())
    return run.plan


@pytest.mark.parametrize("name", TRANSFORMED)
def test_relative_positions_leave_the_loop(name, caplog):
    model, inputs = build(name), example_inputs(name)
    with caplog.at_level(logging.WARNING, logger="workbench"):
        plan = checked_plan(model, inputs)
    assert plan.fallback == [] and plan.fast_share == 1.0
    names = [plan.named[k][0] for k in plan.transformed]
    assert any("rel" in n or "relative" in n for n in names), names
    assert "one example at a time" not in caplog.text


@pytest.mark.parametrize("name", TRANSFORMED)
def test_per_example_gradients_equal_the_loop(name):
    """Straight from per_example_gradients: every slot of every example, padding included."""
    model, inputs = build(name), example_inputs(name, n=3)
    named = [(n, p) for n, p in model.named_parameters() if "rel" in n or "bias" in n][:6]
    with torch.no_grad():
        classes = slot_classes(torch.log_softmax(class_logits(model, inputs).float(), dim=-1), None)
    grads = per_example_gradients(model, inputs, named, classes)
    for i in range(3):
        truths = loop_gradients(model, inputs, classes, [p for _, p in named], i)
        largest = max(float(t.abs().max()) for t in truths)  # a key bias's gradient is 0 up to rounding
        for (n, _), g, truth in zip(named, grads, truths):
            np.testing.assert_allclose(g[:, i], truth, rtol=1e-4, atol=1e-6 * largest, err_msg=n)


def test_two_class_model_is_exact():
    """A two-class model's factored slots (one gradient per example, then multiples) take
    the torch.func path with the log-odds as its objective."""
    model, inputs = build("DeBERTa", n_classes=2), example_inputs("DeBERTa")
    assert max_relative_error(model, inputs, batch_size=3) < 2e-6
    two = per_example_gradients(model, inputs, [("deberta.encoder.rel_embeddings.weight", model.deberta.encoder.rel_embeddings.weight)], None)[0]
    with torch.no_grad():
        classes = torch.tensor([[0, 1]]).repeat(next(iter(inputs.values())).shape[0], 1)
    both = per_example_gradients(model, inputs, [("deberta.encoder.rel_embeddings.weight", model.deberta.encoder.rel_embeddings.weight)], classes)[0]
    torch.testing.assert_close(two[0], both[0] - both[1], rtol=1e-4, atol=1e-7)


class ValueBranch(nn.Module):
    """A layer without a rule whose forward branches on its input's values (vmap cannot),
    for sequences longer than ``from_length`` tokens only."""

    def __init__(self, from_length: int = 0):
        super().__init__()
        self.embed = nn.Embedding(20, 6)
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 6))
        self.head = nn.Linear(6, 3)
        self.from_length = from_length

    def forward(self, input_ids, attention_mask):
        h = self.embed(input_ids) * self.scale
        # like transformers' mask skipping: data-dependent control flow, same result either way
        if input_ids.shape[1] > self.from_length and bool(attention_mask.all()):
            return self.head(h.sum(dim=1))
        return self.head((h * attention_mask.unsqueeze(-1)).sum(dim=1))


def padded_inputs(lengths, width=8):
    ids = torch.randint(1, 20, (len(lengths), width), generator=torch.Generator().manual_seed(0))
    mask = (torch.arange(width) < torch.tensor(lengths)[:, None]).long()
    return {"input_ids": ids * mask, "attention_mask": mask}


def test_vmap_failure_keeps_the_loop_with_a_warning(caplog):
    torch.manual_seed(0)
    model, inputs = ValueBranch().eval(), padded_inputs([8, 5, 7, 3, 8, 6])
    with caplog.at_level(logging.WARNING, logger="workbench"):
        fast, loop = fast_and_loop(model, inputs, batch_size=3)
        plan = checked_plan(model, inputs)
    assert "torch.func cannot compute" in caplog.text and "data-dependent" in caplog.text and "scale" in caplog.text
    assert plan.transformed == [] and [plan.named[k][0] for k in plan.fallback] == ["scale"]
    np.testing.assert_allclose(fast, loop, atol=1e-6 * np.abs(loop).max())


def test_vmap_failing_on_a_later_batch_takes_the_loop_for_that_batch(caplog):
    """The first batch (short sequences) passes the check; a later, longer batch takes a
    branch vmap cannot run: that batch's parameters without a rule take the loop."""
    torch.manual_seed(0)
    model, inputs = ValueBranch(from_length=4).eval(), padded_inputs([3, 4, 2, 8, 6, 7])
    with caplog.at_level(logging.WARNING, logger="workbench"):
        fast, loop = fast_and_loop(model, inputs, batch_size=3)
    assert "torch.func failed on this batch" in caplog.text
    np.testing.assert_allclose(fast, loop, atol=1e-6 * np.abs(loop).max())


def test_t5_relative_attention_bias_is_computed_over_its_stacks(caplog):
    """T5's classification head picks its EOS tokens with a boolean mask, an output shape
    vmap cannot batch, and its relative attention bias is shared by the batch and passed from
    block to block: the bias is computed over the smallest modules that hold it and have an
    example axis (the encoder and the decoder stacks), exact against the loop."""
    from transformers.models.t5.modeling_t5 import T5Stack

    name = "T5 (Flan-T5 shape)"
    for n_classes in (3, 2):  # two classes: the factored slots
        model, inputs = build(name, n_classes=n_classes), example_inputs(name)
        with caplog.at_level(logging.WARNING, logger="workbench"):
            plan = checked_plan(model, inputs)
        assert plan.fallback == [] and plan.fast_share == 1.0 and "one example at a time" not in caplog.text
        assert [type(r.module) for r in plan.regions] == [T5Stack, T5Stack]
        assert sorted(plan.named[k][0] for r in plan.regions for _, k in r.parameters) == sorted(
            n for n, _ in model.named_parameters() if "relative_attention_bias" in n)
        assert max_relative_error(model, inputs, batch_size=3) < 2e-6


class SharedBias(nn.Module):
    """Token embeddings plus a position bias shared by the batch (an embedding of the
    positions, T5-like), branching on the mask's values for sequences longer than
    ``from_length`` (vmap cannot run that branch)."""

    def __init__(self, from_length: int):
        super().__init__()
        self.embed, self.bias, self.from_length = nn.Embedding(20, 6), nn.Embedding(8, 6), from_length

    def forward(self, input_ids, attention_mask):
        h = self.embed(input_ids) + self.bias(torch.arange(input_ids.shape[1]))
        if input_ids.shape[1] > self.from_length and bool(attention_mask.all()):
            return h
        return h * attention_mask.unsqueeze(-1)


class MaskedMean(nn.Module):
    """SharedBias, then a mean over each example's tokens picked by a boolean mask (a
    data-dependent shape: vmap cannot run the whole model)."""

    def __init__(self, from_length: int = 100):
        super().__init__()
        self.inner, self.head = SharedBias(from_length), nn.Linear(6, 3)

    def forward(self, input_ids, attention_mask):
        h = self.inner(input_ids, attention_mask)
        return self.head(torch.stack([h[i][attention_mask[i].bool()].mean(0) for i in range(h.shape[0])]))


def test_a_batch_shared_embedding_is_computed_over_the_module_that_holds_it(caplog):
    torch.manual_seed(0)
    model, inputs = MaskedMean().eval(), padded_inputs([8, 5, 7, 3, 8, 6])
    plan = checked_plan(model, inputs)
    assert plan.fallback == [] and [r.module for r in plan.regions] == [model.inner]
    assert [plan.named[k][0] for r in plan.regions for _, k in r.parameters] == ["inner.bias.weight"]
    fast, loop = fast_and_loop(model, inputs, batch_size=3)
    np.testing.assert_allclose(fast, loop, atol=1e-6 * np.abs(loop).max())


def test_a_region_failing_on_a_later_batch_takes_the_loop_for_that_batch(caplog):
    """The first batch (short sequences) passes the check; a later, longer batch takes a
    branch vmap cannot run inside the region: that batch takes the loop, with a warning."""
    torch.manual_seed(0)
    model, inputs = MaskedMean(from_length=4).eval(), padded_inputs([3, 4, 2, 8, 8, 8])
    with caplog.at_level(logging.WARNING, logger="workbench"):
        fast, loop = fast_and_loop(model, inputs, batch_size=3)
    assert "the fast path failed on the batch from example 3" in caplog.text
    np.testing.assert_allclose(fast, loop, atol=1e-6 * np.abs(loop).max())


def test_too_large_for_a_whole_batch_keeps_the_loop(monkeypatch, caplog):
    from workbench.fisher import checks

    monkeypatch.setattr(checks, "TRANSFORM_MAX_ENTRIES", 10)
    model = ValueBranch(from_length=100).eval()
    with caplog.at_level(logging.WARNING, logger="workbench"):
        plan = checked_plan(model, padded_inputs([3, 4, 2, 8]))
    assert "too large" in caplog.text and plan.transformed == [] and [plan.named[k][0] for k in plan.fallback] == ["scale"]
    monkeypatch.setattr(checks, "TRANSFORM_MAX_ENTRIES", 3 * 6)  # k = 3 slots × 6 entries: just fits
    plan = checked_plan(ValueBranch(from_length=100).eval(), padded_inputs([3, 4, 2, 8]))
    assert [plan.named[k][0] for k in plan.transformed] == ["scale"] and plan.fallback == []


@pytest.mark.parametrize("name", [n for n in ("T5 (Flan-T5 shape)", "UMT5") if n in available()])
def test_regions_replay_padded_batches_after_an_unpadded_check(name, caplog):
    """The check runs on copies of the first example, unpadded here, where transformers
    skips the attention mask (None) and a decoder block holds the batch's key-value cache;
    the next batches are padded, the last is not. Regions must be chosen so that every
    batch replays exactly: no batch may fall back to the loop, and the PEFs equal the loop's."""
    model, inputs = build(name), example_inputs(name, n=12, length=12, seed=1)
    assert int(inputs["attention_mask"][0].sum()) == 12 and int(inputs["attention_mask"][1].sum()) < 12
    unpadded = example_inputs(name, n=6, length=12, seed=2)["input_ids"][0].repeat(6, 1)
    unpadded[:, 3:6] = torch.arange(6)[:, None] + 10  # six different examples of one length: an unpadded batch
    inputs = {"input_ids": torch.cat([inputs["input_ids"], unpadded]),
              "attention_mask": torch.cat([inputs["attention_mask"], torch.ones_like(unpadded)])}
    with caplog.at_level(logging.WARNING, logger="workbench"):
        fast, loop = fast_and_loop(model, inputs, batch_size=6)
    assert "fast path failed" not in caplog.text and "one example at a time" not in caplog.text
    np.testing.assert_allclose(fast, loop, atol=2e-6 * np.abs(loop).max())


def test_torch_s_request_to_file_an_issue_does_not_reach_the_user(recwarn):
    """vmap over T5's scaled-dot-product attention on the CPU warned 'There is a performance drop ... please
    file us an issue' twice per run: exact gradients, and nothing a user of the workbench can act on."""
    from transformers import T5Config, T5ForSequenceClassification

    torch.manual_seed(0)
    model = T5ForSequenceClassification(T5Config(vocab_size=40, d_model=32, d_kv=8, d_ff=64, num_layers=1,
                                                 num_decoder_layers=1, num_heads=4, relative_attention_num_buckets=8,
                                                 pad_token_id=0, decoder_start_token_id=0, eos_token_id=1,
                                                 num_labels=3)).eval()
    ids = torch.randint(3, 40, (4, 8), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    for i, length in enumerate([8, 6, 7, 5]):
        ids[i, length - 1], ids[i, length:], mask[i, length:] = 1, 0, 0  # one end-of-text token each
    compute_pefs(model, {"input_ids": ids, "attention_mask": mask}, n_values=20, progress=False)
    assert not [w for w in recwarn if "performance drop" in str(w.message)]


class WeightNormed(nn.Module):
    """A layer of torch's deprecated weight_norm: an nn.Linear whose parameters are weight_g and weight_v (its
    weight is computed from them before each call), which the Linear rule cannot serve."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 6)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.mid = torch.nn.utils.weight_norm(nn.Linear(6, 6))
        self.head = nn.Linear(6, 3)

    def forward(self, input_ids, attention_mask):
        h = (self.embed(input_ids) * attention_mask.unsqueeze(-1)).sum(dim=1)
        return self.head(torch.tanh(self.mid(h)))


@pytest.mark.parametrize("transformable", [True, False])
def test_a_layer_whose_parameters_its_rule_does_not_know_alone_leaves_the_rules(transformable, monkeypatch, caplog):
    """The Linear rule was given the weight-normed Linear (weight_g, weight_v) for its exact type, so the fast path
    failed (KeyError: 'weight_g') and took the rules of every layer away: embed, mid and head all computed as
    "6 parameters without a rule". Only that layer loses its rule now, and the PEFs stay exact."""
    from workbench.fisher import checks

    if not transformable:
        monkeypatch.setattr(checks, "TRANSFORM_MAX_ENTRIES", 10)
    torch.manual_seed(0)
    model, inputs = WeightNormed().eval(), padded_inputs([8, 5, 7, 3, 8, 6])
    with caplog.at_level(logging.INFO, logger="workbench"):
        plan = checked_plan(model, inputs)
        error = max_relative_error(model, inputs, batch_size=3)
    assert plan.rule_modules == [model.embed, model.head]
    without = {plan.named[k][0] for k in plan.fallback + plan.transformed}
    assert without == {"mid.bias", "mid.weight_g", "mid.weight_v"}
    text = " ".join(caplog.text.split())
    assert "fast path failed" not in text and "6 parameters" not in text and "mid.weight_g" in text
    assert ("computed one example at a time" in text) is not transformable
    assert error < 1e-5


@pytest.mark.parametrize("how", ["weight_norm", "spectral_norm", "orthogonal"])
def test_a_parametrized_layer_leaves_its_rule_alone_and_its_pefs_stay_exact(how, caplog):
    """torch's parametrizations (the weight computed from parametrizations.weight.original*) are served by
    torch.func, the other layers by their rules."""
    torch.manual_seed(0)
    model, inputs = WeightNormed().eval(), padded_inputs([8, 5, 7, 3, 8, 6])
    model.mid = getattr(torch.nn.utils.parametrizations, how)(nn.Linear(6, 6))
    with caplog.at_level(logging.INFO, logger="workbench"):
        plan = checked_plan(model, inputs)
        error = max_relative_error(model, inputs, batch_size=3)
    assert plan.rule_modules == [model.embed, model.head] and plan.fallback == []
    assert {plan.named[k][0] for k in plan.transformed} == {n for n, _ in model.mid.named_parameters(prefix="mid")}
    assert "no per-example rule for the layers owning" in caplog.text and "mid.parametrizations.weight.original" in \
        caplog.text and "fast path failed" not in caplog.text
    assert error < 1e-5


@pytest.mark.parametrize("transformable", [True, False])
def test_a_failed_fast_path_says_what_computes_the_parameters_and_that_the_pefs_stay_exact(transformable, monkeypatch,
                                                                                             caplog):
    """The fast path's log said only 'failed on this model (KeyError: 'weight_g')', which read as a failed run, or as
    PEFs not to be trusted; where torch.func could not serve them, the layers were said to 'differ from the loop's'.
    The weight-normed Linear is given the Linear rule here as before, for a fast path that fails."""
    from workbench.fisher import checks, config
    from workbench.fisher.rules import PER_EXAMPLE_RULES

    monkeypatch.setattr(config, "rule_for", lambda module: PER_EXAMPLE_RULES.get(type(module)))
    if not transformable:
        monkeypatch.setattr(checks, "TRANSFORM_MAX_ENTRIES", 10)
    torch.manual_seed(0)
    model, inputs = WeightNormed().eval(), padded_inputs([8, 5, 7, 3, 8, 6])
    with caplog.at_level(logging.WARNING, logger="workbench"):
        fast, loop = fast_and_loop(model, inputs, batch_size=3)
    text = " ".join(caplog.text.split())
    assert "the fast path failed on this model (KeyError: 'weight_g'), so the parameters of its 3 layers with a " \
           "per-example rule are computed as those without one" in text and "the PEFs stay exact" in text
    assert ("3 layers lost their rule when the fast path failed, so their parameters are computed one example at a "
            "time" in text) is not transformable and "differ from the loop's" not in text
    np.testing.assert_allclose(fast, loop, atol=1e-6 * np.abs(loop).max())
