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


@dataclass
class CaptureLayers:
    """Context manager that records the inputs and outputs of the given layers.

    A layer whose output is shared by the whole batch (BERT's position embeddings, computed
    once with a batch dimension of 1 and broadcast) has no per-example output gradient;
    its output is expanded to the batch here so that it gets one. Hooks live here, not on
    the model, and are removed on exit, also after an exception.
    """

    modules: list[nn.Module]
    batch_size: int
    captures: list[Capture] = field(default_factory=list)
    unbatched: set[int] = field(default_factory=set)  # ids of layers with no batch dimension
    _handles: list = field(default_factory=list)

    def __enter__(self) -> "CaptureLayers":
        for module in self.modules:
            self._handles.append(module.register_forward_hook(self._record))
        return self

    def _record(self, module, args, output):
        if not (isinstance(output, torch.Tensor) and output.requires_grad and args):
            return None
        layer_input = args[0].detach()
        if output.shape[0] == 1 and self.batch_size > 1 and layer_input.shape[0] == 1:
            output = output.expand(self.batch_size, *output.shape[1:])
            layer_input = layer_input.expand(self.batch_size, *layer_input.shape[1:])
        if output.shape[0] == self.batch_size and layer_input.shape[0] == self.batch_size:
            self.captures.append(Capture(module, layer_input, output))
        else:
            self.unbatched.add(id(module))
        return output

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
