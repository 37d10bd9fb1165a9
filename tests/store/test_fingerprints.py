"""A model's fingerprint is hashed once per state of its weights, and follows every change."""

import torch
from torch import nn

import workbench.store.fingerprints as fingerprints
from workbench.store.fingerprints import fingerprint_model, fingerprint_tensors


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def test_model_fingerprint_is_hashed_once_per_state_and_follows_every_change(monkeypatch):
    hashed = []
    real = fingerprints.fingerprint_tensors
    monkeypatch.setattr(fingerprints, "fingerprint_tensors", lambda t: hashed.append(1) or real(t))
    model = _model()

    def fresh():  # what the hash of the current state is, from scratch
        return fingerprint_tensors(dict(model.state_dict()))

    first = fingerprint_model(model)
    assert first == fresh() and len(hashed) == 1
    assert fingerprint_model(model) == first and len(hashed) == 1, "an unchanged model is not hashed again"

    changes = [
        lambda: model[0].weight.data.add_(1e-3),  # in place, outside autograd
        lambda: torch.optim.SGD(model.parameters(), lr=0.1).step() if _with_gradients(model) else None,
        lambda: model[1].running_mean.fill_(0.5),  # a buffer
        lambda: model.load_state_dict(_model().state_dict()),  # copied in: back to the first weights
        lambda: setattr(model[2].weight, "data", model[2].weight.data.clone() * 2),  # new tensor
        lambda: model.double(),
    ]
    seen = {first}
    for change in changes:
        before = len(hashed)
        with torch.no_grad() if change is not changes[1] else torch.enable_grad():
            change()
        after = fingerprint_model(model)
        assert len(hashed) == before + 1, "a changed model is hashed again"
        assert after == fresh()
        seen.add(after)
    assert len(seen) == len(changes)  # load_state_dict brought back the first weights
    assert fingerprint_model(_model()) == first  # another model with the same state: the same fingerprint


def _with_gradients(model) -> bool:
    model(torch.randn(5, 4)).sum().backward()
    return True
