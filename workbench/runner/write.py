"""The PEFs of every example, streamed into a store folder batch by batch: :func:`write_pefs`."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch

from ..core.arguments import user_path
from ..core.device import run_device
from ..fisher import PefConfig, pef_mode, split_labels
from ..store.files import StoreWriteError
from ..store.pef_store import PefStore
from ..store.writer import PefStoreWriter, existing_manifest, manifest_bytes
from .checks import check_probe
from .estimate import PROBE_BATCH
from .run import PefRun

logger = logging.getLogger(__name__)


def write_pefs(
    out: str | os.PathLike,
    model: torch.nn.Module,
    inputs,
    labels=None,
    *,
    kind: str = "lrm",
    n_values: int | None = 65536,
    top_k_classes: int | None = None,
    include=None,
    exclude=None,
    batch_size: int | None = None,
    method: str = "hooks",
    sketch: int | None = None,
    sketch_seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    overwrite: bool = False,
    provenance: Mapping | None = None,
    check_resources: bool = True,
) -> PefStore:
    """Compute PEFs batch by batch and stream them to the store folder ``out``.

    Memory holds one batch at a time. If ``out`` holds an unfinished store made with the
    same model, data and arguments, only the missing batches are computed (resume; also
    after the process was killed). A store made with anything else is refused unless
    ``overwrite=True``. Arguments as in :func:`workbench.compute_pefs`, and:

    batch_size: examples per batch and per chunk file; None chooses it from the memory
        available (recorded in the manifest, so a resume reuses it).
    sketch, sketch_seed: a count sketch of the parameter axis instead of the top ``n_values``
        (as in :func:`workbench.compute_pefs`); the manifest records it, and a store of
        another sketch (or none) is refused on resume.
    provenance: JSON-able facts recorded with the PEFs (e.g. ``{"model_path": ..., "seed": ...}``).
    check_resources: before anything is written, estimate the disk, peak memory and time
        of the run (from timing its first batch) and refuse, with the numbers, when the disk
        or memory will not hold it (:class:`workbench.runner.estimate.InsufficientResourcesError`).
        The estimate is shown in the progress bar and kept as ``store.estimate``.
    """
    if isinstance(model, (str, os.PathLike)) and not isinstance(out, (str, os.PathLike)):
        # write_pefs(model, "runs/x", ...) was told "out must be a path ..., got BertForSequenceClassification"
        raise TypeError(f"write_pefs takes the store folder first and the model second, and the model (a "
                        f"{type(out).__name__}) came first: write_pefs({str(model)!r}, model, inputs, labels)")
    out = user_path(out, "out")
    device = run_device(model, device)
    inputs, labels = split_labels(inputs, labels)
    seen = manifest_bytes(out)  # a store another process writes from now on is found under the writer's lock
    existing = existing_manifest(out, overwrite)
    if batch_size is None and existing is not None:
        batch_size = existing["info"].get("batch_size")  # a resume keeps the chunking it started with
    config = PefConfig(kind, n_values, top_k_classes, include, exclude, PROBE_BATCH if batch_size is None else batch_size, method,
                       sketch, sketch_seed)
    run = PefRun.prepare(model, inputs, labels, config, device)
    with pef_mode(model):
        # Everything that bad input can make fail happens here, before anything is written.
        probe = None
        if batch_size is None:
            probe = run.probe(0)
            run = run.sized_by(probe)
        writer = PefStoreWriter(out, run.manifest(provenance), existing)
        done = set()
        if existing is not None:
            done = writer.resume(existing)
            seen = manifest_bytes(out)  # as the resume left it
        missing = [b for b in range(run.n_chunks) if b not in done]
        estimate = None
        if missing:
            if probe is None or probe.size != run.config.batch_size:  # the probe must be a batch of the run
                probe = run.probe(missing[0], warm_up=probe is None)
            check_probe(probe, labels)
            estimate = run.estimate(probe, n_done=sum(run.batch_len(b) for b in done), out=out)
            if check_resources:
                estimate.check()
        elif existing.get("complete"):  # nothing to compute and nothing to write: a read-only store will do
            store = PefStore(out)
            store.estimate = None
            return store
        else:
            probe = None  # every chunk is on disk: only the manifest is left to complete

        with writer.lock(seen):
            writer.open(existing, done)
            try:
                if estimate is not None:
                    logger.info("PEF run %s: %s", out, estimate)
                with writer.in_background() as background:
                    run.stream(background.submit, skip=done.__contains__, probe=probe, estimate=estimate,
                               progress=progress, initial=sum(run.batch_len(b) for b in done))
            except (ValueError, TypeError, IndexError) as err:
                # bad input found mid-run: leave nothing behind that looks like a usable store; a store
                # that could not be written (a full disk) keeps its chunks, for the resume
                if existing is None and not isinstance(err, StoreWriteError):
                    writer.remove()
                raise
            store = writer.complete()
    store.estimate = estimate
    return store
