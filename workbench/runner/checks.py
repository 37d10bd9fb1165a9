"""Checks on what the model produced, before anything of it is written."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..core.chunks import PefChunk
from ..core.validation import check_label_range

logger = logging.getLogger(__name__)


class NonFinitePefsError(ValueError):
    """The model produced NaN or infinite outputs or gradients."""


class HalfPrecisionError(TypeError):
    """The model's selected parameters are float16 or bfloat16."""


def check_precision(named: list) -> None:
    """Refuses half precision: a bf16 gradient keeps 8 bits of mantissa, so PEFs (and the top
    entries chosen from them) would be silently off by up to 0.4%, and float16 gradients of
    confident examples underflow to zero. Casting is the user's choice (memory). Not "leave them
    out with exclude=": a float32 model with a bf16 head, told so, failed in torch's Linear on
    the dtypes."""
    half = [(name, p.dtype) for name, p in named if p.dtype in (torch.float16, torch.bfloat16)]
    if half:
        names = ", ".join(f"{name} ({str(dtype).replace('torch.', '')})" for name, dtype in half[:3])
        raise HalfPrecisionError(
            f"{len(half)} selected parameters are in half precision (e.g. {names}); PEFs are computed in float32. "
            "Cast the model first: model.float() (or load it with torch_dtype=torch.float32)"
        )


def check_chunk_finite(chunk: PefChunk, start: int) -> None:
    """NaN or infinite logits or PEFs stop the run, instead of being written."""
    bad = ~np.isfinite(chunk.logits).all(axis=1) | ~np.isfinite(chunk.frobenius_norms)
    if not np.isfinite(chunk.values).all():
        rows = np.repeat(np.arange(len(chunk.row_offsets) - 1), np.diff(chunk.row_offsets))
        n_slots = max(1, (len(chunk.row_offsets) - 1) // chunk.n_examples)
        bad[np.unique(rows[~np.isfinite(chunk.values)] // n_slots)] = True
    if bad.any():
        examples = (start + np.flatnonzero(bad))[:5].tolist()
        raise NonFinitePefsError(
            f"the model's outputs or gradients are NaN or infinite for {int(bad.sum())} examples (first: {examples}), "
            "so their PEFs would be NaN. Check the model's weights (all(torch.isfinite(p).all() for p in "
            "model.parameters())) and inputs; load it in float32 if it overflows in half precision."
        )


def check_probe(probe, labels: torch.Tensor) -> None:
    """What the first batch tells about the whole data set: labels in range, finite PEFs."""
    n_classes = int(probe.chunk.logits.shape[1])
    check_label_range(labels, n_classes)
    check_chunk_finite(probe.chunk, probe.start)
    zero = int((probe.chunk.frobenius_norms == 0).sum())
    if zero == probe.size:
        logger.warning(
            "every PEF of the first batch is all zero: the selected parameters do not change the model's output "
            "(check include/exclude), or the model is certain (p = 1) of every example"
        )
