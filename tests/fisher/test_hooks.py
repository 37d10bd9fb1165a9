"""Every forward hook the PEF code registers is removed: after a run, and when the forward raises.

After the manner of Captum's tests/attr/test_hook_removal.py: a layer in the middle of the
model raises on its n-th call (during the probe, mid-run, on a worker-thread run), and
afterwards no module of the model holds a hook, and torch holds no global one.
"""

import copy

import pytest
import torch
from torch import nn
from torch.nn.modules import module as torch_module

import workbench.fisher.sparsify as sparsify
from tests.conftest import tiny_bert, tiny_bert_inputs
from workbench import compute_pefs, write_pefs
from workbench.analysis.highlights import token_scores


class Boom(nn.Module):
    """A pass-through (where the model had an eval-mode dropout) that raises on its n-th call."""

    def __init__(self, fail_on_call: int | None):
        super().__init__()
        self.fail_on_call, self.calls = fail_on_call, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("boom in the forward")
        return x


def _model(fail_on_call: int | None = None) -> nn.Module:
    model = tiny_bert(3)
    model.bert.encoder.layer[1].output.dropout = Boom(fail_on_call)  # after a Linear that has a rule
    return model


def _hooks(model: nn.Module) -> dict:
    """Every hook on the model's modules, and torch's global ones."""
    found = {}
    for name, m in model.named_modules():
        for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                     "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs"):
            if getattr(m, kind, None):
                found[f"{name}.{kind}"] = len(getattr(m, kind))
    for kind in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks"):
        if getattr(torch_module, kind, None):
            found[kind] = len(getattr(torch_module, kind))
    return found


RUNS = {
    "compute_pefs lrm": lambda model, tmp: compute_pefs(model, tiny_bert_inputs(), n_values=100, batch_size=3, progress=False),
    "compute_pefs d": lambda model, tmp: compute_pefs(model, tiny_bert_inputs(), kind="d", n_values=100, batch_size=3,
                                                      progress=False),
    "write_pefs": lambda model, tmp: write_pefs(tmp / "pefs", model, tiny_bert_inputs(), n_values=100, batch_size=3,
                                                progress=False),
    "compute_pefs, batch size chosen": lambda model, tmp: compute_pefs(model, tiny_bert_inputs(), n_values=100,
                                                                       progress=False),
}


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("threads", [1, 2])
def test_hooks_are_removed_after_a_run(run, threads, tmp_path):
    model = _model()
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        RUNS[run](model, tmp_path)
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(saved)
    assert model.bert.encoder.layer[1].output.dropout.calls > 0, "the layer ran"
    assert _hooks(model) == {}


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("fail_on_call", [1, 2, 3])  # the probe's warm-up, the probe, the next batch (or probe)
@pytest.mark.parametrize("threads", [1, 2])
def test_hooks_are_removed_when_the_forward_raises(run, fail_on_call, threads, tmp_path):
    model = _model(fail_on_call)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        with pytest.raises(RuntimeError, match="boom in the forward"):
            RUNS[run](model, tmp_path)
        assert torch.get_num_threads() == threads, "the worker thread's share is given back"
    finally:
        torch.set_num_threads(saved)
    assert _hooks(model) == {}


@pytest.mark.parametrize("fail_on_call", [None, 1])
def test_hooks_are_removed_by_the_blockwise_path_and_the_token_scores(fail_on_call, monkeypatch):
    monkeypatch.setattr(sparsify, "DENSE_MAX_ENTRIES", 0)  # every model counts as large
    model = _model(fail_on_call)
    inputs = tiny_bert_inputs()
    if fail_on_call is None:
        compute_pefs(model, inputs, n_values=100, batch_size=3, progress=False)
    else:
        with pytest.raises(RuntimeError, match="boom"):
            compute_pefs(model, inputs, n_values=100, batch_size=3, progress=False)
    assert _hooks(model) == {}

    from workbench.npeff import LrmNpeff

    reference = tiny_bert(3)
    pefs = compute_pefs(reference, inputs, n_values=200, batch_size=3, progress=False)
    decomposition = LrmNpeff(2, n_iters_g_only=2, n_iters_joint=2, progress=False).fit(pefs)
    model = copy.deepcopy(reference)
    model.bert.encoder.layer[1].output.dropout = Boom(fail_on_call)
    if fail_on_call is None:
        token_scores(model, decomposition, 0, inputs)
    else:
        with pytest.raises(RuntimeError, match="boom"):
            token_scores(model, decomposition, 0, inputs)
    assert _hooks(model) == {}
