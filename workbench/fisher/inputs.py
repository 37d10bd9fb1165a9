"""The model's inputs and outputs: batches of examples, class logits, labels.

``inputs`` are a tensor, or a dict of tensors (a tokenizer's output), with one row per
example; a batch is a slice of them on the device, its padding cut. The model must return
class logits (or an output whose ``.logits`` are); anything else is refused with a
message that says how to wrap it (:class:`NotClassLogitsError`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from ..core.validation import as_labels, check_label_range, example_count, mixed_dtypes

Inputs = Mapping[str, torch.Tensor] | torch.Tensor


class NotClassLogitsError(ValueError):
    """The model's forward does not return a (batch, n_classes) tensor of logits."""


def n_inputs(inputs: Inputs) -> int:
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0])
    if not isinstance(inputs, Mapping) or not inputs:
        raise TypeError("inputs must be a tensor or a non-empty dict of tensors with one row per example")
    sizes = {k: int(v.shape[0]) for k, v in inputs.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"every input must have one row per example; got first dimensions {sizes}")
    return next(iter(sizes.values()))


def n_positions(batch: Inputs) -> int | None:
    """The batch's sequence length: the second axis of its mask or token ids (None without one)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[1]) if batch.ndim >= 2 else None
    for key in ("attention_mask", "input_ids", *batch):
        value = batch.get(key)
        if isinstance(value, torch.Tensor) and value.ndim >= 2:
            return int(value.shape[1])
    return None


def slice_inputs(inputs: Inputs, start: int, stop: int, device: torch.device) -> Inputs:
    """Rows start:stop, moved to device; padding columns no row of the slice uses are cut."""
    if isinstance(inputs, torch.Tensor):
        return inputs[start:stop].to(device)
    return {k: v.to(device) for k, v in _without_unused_columns({k: v[start:stop] for k, v in inputs.items()}).items()}


def select_rows(batch: Inputs, rows: torch.Tensor) -> Inputs:
    """The batch's ``rows``, with the padding columns none of them uses cut."""
    if isinstance(batch, torch.Tensor):
        return batch[rows]
    return _without_unused_columns({k: v[rows] for k, v in batch.items()})


def _without_unused_columns(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The columns from the first any row uses to the last (padding on the right or the left):
    a left-padded example alone must not keep its pads, since a model with absolute positions
    (GPT-2) reads them as shifting its tokens."""
    mask = batch.get("attention_mask")
    if mask is None or mask.ndim != 2 or not mask.shape[0] or not bool(mask.any()):
        return dict(batch)
    full = mask.shape[1]
    used = torch.nonzero(mask.any(dim=0)).flatten()
    start, stop = int(used[0]), int(used[-1]) + 1
    if (start, stop) == (0, full):
        return dict(batch)
    return {k: v[:, start:stop] if v.ndim >= 2 and v.shape[1] == full else v for k, v in batch.items()}


def length_groups(batch: Inputs) -> list[torch.Tensor] | None:
    """The batch's rows grouped by length (each group's rows in order, the groups in order of
    their first row), or None when no row is padded."""
    mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None
    if mask is None or mask.ndim != 2 or bool(mask.all()):
        return None
    lengths = mask.sum(dim=1).cpu()
    firsts = {}
    for row, length in enumerate(lengths.tolist()):
        firsts.setdefault(length, []).append(row)
    return [torch.tensor(rows) for rows in firsts.values()]


def unpadded_parts(batch: Inputs) -> list[tuple[torch.Tensor, Inputs]] | None:
    """(rows, those rows without padding) for each group of the batch's examples of one length,
    as a model whose outputs change with padding is computed; None when no row is padded."""
    groups = length_groups(batch)
    return None if groups is None else [(rows, select_rows(batch, rows)) for rows in groups]


def groups_as_computed(batch: Inputs, unpadded: bool) -> list[tuple[torch.Tensor, Inputs]]:
    """(rows, inputs) to run the model on: the whole batch, or, for a model whose outputs change
    with padding (``unpadded``: see ``fisher.checks.padding_changes_outputs``), its groups of one
    length without padding, so that each example is computed as alone."""
    return (unpadded_parts(batch) if unpadded else None) or [(torch.arange(n_inputs(batch)), batch)]


def class_logits(model: nn.Module, batch: Inputs) -> torch.Tensor:
    """Run the model and return (batch, n_classes) logits, or say clearly why not."""
    try:
        out = model(**batch) if isinstance(batch, Mapping) else model(batch)
    except ValueError as error:  # transformers' decoder classifiers, e.g. GPT-2 as shipped
        if "no padding token is defined" not in str(error):
            raise
        raise ValueError(
            "the model's config has no pad_token_id, and its classifier, which reads each example's last token, "
            "refuses batches of more than one example without one (PEFs run batches, also to check the model): set "
            "model.config.pad_token_id = tokenizer.pad_token_id, after tokenizer.pad_token = tokenizer.eos_token when "
            "the tokenizer has none (run_model does this when it loads a folder)") from error
    except RuntimeError as error:  # torch's "mat1 and mat2 must have the same dtype" named no fix
        reason = mixed_dtypes(model, batch, error)
        if reason is None:
            _note_own_forward(error, model, batch)
            raise
        raise TypeError(reason) from error
    except Exception as error:
        _note_own_forward(error, model, batch)
        raise
    logits = getattr(out, "logits", out)
    if isinstance(logits, Mapping) and "logits" in logits:  # a forward of one's own returning {"logits": ...}
        logits = logits["logits"]
    if isinstance(logits, (tuple, list)) and logits:
        logits = logits[0]
    n = n_inputs(batch)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != n or logits.shape[1] < 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        if isinstance(logits, torch.Tensor) and logits.ndim == 2 and logits.shape[1] == 1:
            raise NotClassLogitsError(
                f"the model has one output per example, shape {shape}: a regression head (or a one-logit binary "
                "one). A PEF is the Fisher of the model's predicted class distribution, which a regression head "
                "does not give: use a classifier, or for a one-logit binary head wrap the model so its forward "
                "returns the two logits torch.cat([-z / 2, z / 2], dim=-1) (softmax of them is the sigmoid of z)")
        raise NotClassLogitsError(
            f"the model's output should be class logits of shape (batch={n}, n_classes>=2), got {shape}. "
            "Wrap the model so its forward returns one logit per class (for a language model, see "
            "workbench.models.lm), or pass a model whose output has a .logits attribute of that shape."
        )
    return logits


def _note_own_forward(error: Exception, model: nn.Module, batch: Inputs) -> None:
    """Says that ``error`` came from the model's own forward, which a traceback deep in transformers leaves the
    reader to guess (a config with return_dict=False failed with "'tuple' object has no attribute
    'last_hidden_state'"), with the fix where one is known."""
    shapes = ({k: tuple(v.shape) for k, v in batch.items()} if isinstance(batch, Mapping) else tuple(batch.shape))
    call = "model(**inputs)" if isinstance(batch, Mapping) else "model(inputs)"
    note = f"raised by the model's own forward, called as {call} with inputs of shapes {shapes}"
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "return_dict", True) is False:
        note += ("; the model's config has return_dict=False (or torchscript=True), which its transformers layers "
                 "no longer support: set model.config.return_dict = True (and torchscript = False)")
    error.add_note(note)


def logits_with_gradients(model: nn.Module, batch: Inputs) -> torch.Tensor:
    """:func:`class_logits`, checked to depend on the parameters through autograd: a forward under
    torch.no_grad() failed at the first batch with torch's "element 0 of tensors does not require grad"."""
    with torch.inference_mode(False), torch.enable_grad():  # the run's own mode, whatever the caller's (pef_mode)
        logits = class_logits(model, batch)
    if not logits.requires_grad and any(p.requires_grad for p in model.parameters()):
        raise NotClassLogitsError(
            "the model's logits do not depend on its parameters through autograd (requires_grad is False): its forward "
            "runs under torch.no_grad() or torch.inference_mode(), or detaches its output; PEFs are gradients of the "
            "logits, so remove that from the forward")
    return logits


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Dropout off while PEFs are taken; the model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def pef_mode(model: nn.Module):
    """What exact PEFs need, whatever the caller's context: dropout off (:func:`eval_mode`), gradients on
    (inside a caller's torch.no_grad() or inference_mode() autograd raised "does not require grad"), and
    autocast off (under torch.autocast(bfloat16) every entry was 0.5% off, or a rule failed on bfloat16). The
    readings of a model (token scores, perturbations, traces) run in it too, so they read the model the PEFs read."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.enable_grad())
        for device_type in ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",):
            stack.enter_context(torch.autocast(device_type, enabled=False))
        yield stack.enter_context(eval_mode(model))


def repeated(batch: Inputs, e: int) -> Inputs:
    """The batch's first example, e times."""
    if isinstance(batch, torch.Tensor):
        return batch[:1].repeat(e, *[1] * (batch.ndim - 1))
    return {k: v[:1].repeat(e, *[1] * (v.ndim - 1)) for k, v in batch.items()}


def example_slice(batch: Inputs, i: int) -> Inputs:
    """Example i alone, without padding on either side (the plain per-example computation)."""
    if isinstance(batch, torch.Tensor):
        return batch[i : i + 1]
    return _without_unused_columns({k: v[i : i + 1] for k, v in batch.items()})


def check_batch_labels(labels: torch.Tensor, n_classes: int, start: int) -> None:
    check_label_range(labels, n_classes, start)


def _same_values(a, b) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a.cpu() if hasattr(a, "cpu") else a),
                                   np.asarray(b.cpu() if hasattr(b, "cpu") else b)))
    except (TypeError, ValueError):
        return False


def _outside_inference_mode(inputs: Inputs) -> Inputs:
    """Inputs made under torch.inference_mode() (tokenized inside the block, as evaluation code does) as plain
    tensors: autograd cannot save an inference tensor for the backward of a PEF, and said only so."""
    def plain(value):
        if not (isinstance(value, torch.Tensor) and value.is_inference()):
            return value
        with torch.inference_mode(False):
            return value.clone()

    return {k: plain(v) for k, v in inputs.items()} if isinstance(inputs, Mapping) else plain(inputs)


def split_labels(inputs: Inputs, labels) -> tuple[Inputs, torch.Tensor]:
    """Labels given apart, or as inputs["labels"] or inputs["label"], or unknown (-1); never passed
    to the model, so a Hugging Face model returns logits rather than a loss."""
    given = "labels="
    # "label" is a datasets column, which transformers' collators pass on as the labels: it ran as an
    # input the model ignores, and the examples were taken as unlabelled
    for key in ("labels", "label") if isinstance(inputs, Mapping) else ():
        if key in inputs:
            inputs = dict(inputs)
            from_inputs = inputs.pop(key)
            if labels is not None and not _same_values(labels, from_inputs):  # which one was meant?
                raise ValueError(f"labels are given twice, as {given} and as inputs[{key!r}], and they differ; pass "
                                 "them once")
            given, labels = (f"inputs[{key!r}]", from_inputs) if labels is None else (given, labels)
    inputs = _outside_inference_mode(inputs)
    # the checks every entry point shares (workbench.core.validation)
    ids = inputs.get("input_ids") if isinstance(inputs, Mapping) else inputs
    try:
        return inputs, as_labels(labels, example_count(inputs))
    except ValueError as error:
        if isinstance(ids, torch.Tensor) and ids.ndim == 1:  # the labels were not the mistake
            raise ValueError(f"{error}; the inputs are one axis of {len(ids)} values, read as {len(ids)} examples: for "
                             "one example's token ids add the batch axis, ids.unsqueeze(0)") from None
        raise
