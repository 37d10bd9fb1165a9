"""Forward hooks that record the inputs and outputs of the layers owning selected parameters."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class Capture:
    """One call of a layer that owns selected parameters: its input and output."""

    module: nn.Module
    layer_input: torch.Tensor
    output: torch.Tensor


class LayerCallError(RuntimeError):
    """A layer was called in a way its rule cannot serve (no per-example batch axis, no
    tensor input); the batch is then computed by the loop (:mod:`.batches`)."""

    def __init__(self, message: str, module: nn.Module | None = None):
        super().__init__(message)
        self.module = module


class ForwardHooks:
    """A context manager that calls ``self._record(module, args, kwargs, output)`` after each
    call of ``self.modules``; the hooks live only inside the ``with``, also after an exception."""

    modules: list[nn.Module]
    _handles: list

    def __enter__(self):
        for module in self.modules:
            self._handles.append(module.register_forward_hook(self._record, with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _record(self, module, args, kwargs, output):
        raise NotImplementedError


@dataclass
class CaptureLayers(ForwardHooks):
    """Context manager that records the inputs and outputs of the given layers.

    A layer in ``expand`` has an output shared by the whole batch (BERT's position
    embeddings, computed once with a batch dimension of 1 and broadcast), so no
    per-example output gradient; its output is expanded to the batch here so that it gets
    one. A layer in ``fold`` is called on examples and positions folded into one axis (OPT's
    feed-forward layers): ``batch_size × positions`` rows, whose input is unfolded here (any
    other number of rows, such as the tokens a mixture of experts routed to one expert, is no
    such axis). A layer in ``call_inputs`` gives its
    rule what that function finds from the call (the indices an embedding really read).
    Which layers are which is decided by a check that runs the model
    (:func:`workbench.fisher.checks.layer_batching`), never from one call's shapes: a
    shared output whose first axis happens to equal the batch size (T5's relative
    attention bias when the batch is as long as the sequence) is not an example axis.
    Any other call whose input and output do not have the batch's examples on their
    first axis raises :class:`LayerCallError`. Hooks live here, not on the model, and are
    removed on exit, also after an exception.
    """

    modules: list[nn.Module]
    batch_size: int
    expand: set[int] = field(default_factory=set)  # ids of layers whose batch-shared output is expanded
    fold: set[int] = field(default_factory=set)  # ids of layers called on (examples × positions, ...)
    # id -> f(module, args, kwargs): the layer input its rule takes, where that is not the first argument
    call_inputs: dict = field(default_factory=dict)
    positions: int | None = None  # the batch's sequence length: a folded call has batch_size × positions rows
    captures: list[Capture] = field(default_factory=list)
    _handles: list = field(default_factory=list)


    def _record(self, module, args, kwargs, output):
        if isinstance(output, torch.Tensor) and not output.requires_grad:
            return None  # no gradient flows through this call (e.g. under torch.no_grad)
        if not (isinstance(output, torch.Tensor) and args and isinstance(args[0], torch.Tensor)):
            raise LayerCallError(f"{type(module).__name__} was called without a tensor as its first argument, "
                                 "or returned something other than one tensor", module)
        from_call = self.call_inputs.get(id(module))
        layer_input = args[0].detach() if from_call is None else from_call(module, args, kwargs)
        if id(module) in self.expand and output.shape[0] == 1 and layer_input.shape[0] == 1 and self.batch_size > 1:
            output = output.expand(self.batch_size, *output.shape[1:])
            layer_input = layer_input.expand(self.batch_size, *layer_input.shape[1:])
        if id(module) in self.fold and output.shape[0] == layer_input.shape[0] == self.batch_size * (self.positions or -1):
            # examples × positions folded into one axis (OPT): unfolded for the rule; the
            # output's gradient is unfolded likewise (gradients.BatchGradients)
            layer_input = layer_input.reshape(self.batch_size, -1, *layer_input.shape[1:])
        elif output.shape[0] != self.batch_size or layer_input.shape[0] != self.batch_size:
            raise LayerCallError(
                f"{type(module).__name__} was called with input {tuple(layer_input.shape)} and output {tuple(output.shape)}, "
                f"whose first axis is not the batch's {self.batch_size} examples", module
            )
        self.captures.append(Capture(module, layer_input, output))
        return output
