"""Choosing the device: CUDA when present, the CPU otherwise, and a clear error for one that isn't there."""

from __future__ import annotations

import torch

from .arguments import not_a_model


def run_device(model, device: str | torch.device | None = None) -> torch.device:
    """Where a run on ``model`` computes: ``device`` if given, else where the model's weights are."""
    if device is not None:
        return resolve_device(device)
    if not isinstance(model, torch.nn.Module):
        raise not_a_model(model)
    first = next(model.parameters(), None)
    if first is None:
        raise ValueError("the model has no parameters: there is no Fisher information to compute")
    return first.device


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` picks CUDA when available, else the CPU; a named device must exist."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        number = f" (cuda:{device} for the GPU numbered {device})" if str(device).isdigit() else ""
        raise ValueError(f"{device!r} is not a device name; use 'cpu', 'cuda' or 'cuda:N'{number}") from err
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(device)!r} was asked for but this machine has no usable CUDA GPU "
                "(torch.cuda.is_available() is False); use device='cpu', or leave device out (None: a PEF run "
                "computes where the model is, a fit on CUDA when there is one; on the command line, leave out --device)"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {str(device)!r} does not exist: this machine has {torch.cuda.device_count()} CUDA "
                f"device(s), numbered from 0; use 'cuda:N' with N below {torch.cuda.device_count()}, 'cuda' or 'cpu'"
            )
    elif resolved.type not in ("cpu", "mps"):
        raise ValueError(f"device {str(device)!r} is not supported; use 'cpu' or 'cuda'")
    return resolved
