"""PEFs with the batches shared out among the ranks, into one ordinary store: :func:`write_pefs_sharded`."""

from __future__ import annotations

import contextlib
import os

import torch

from ..core.arguments import user_path
from ..fisher import PefConfig, pef_mode, split_labels
from ..runner import PefRun
from ..store.files import StoreError
from ..store.pef_store import MANIFEST, PefStore
from ..store.writer import PefStoreWriter, existing_manifest, manifest_bytes
from .group import barrier, check_same_on_all_ranks, current_ranks


def write_pefs_sharded(out: str | os.PathLike, model: torch.nn.Module, inputs, labels=None, *,
                       kind: str = "lrm", n_values: int | None = 65536, top_k_classes: int | None = None,
                       include=None, exclude=None, batch_size: int = 16, method: str = "hooks",
                       sketch: int | None = None, sketch_seed: int = 0,
                       device: str | torch.device | None = None, overwrite: bool = False, provenance=None,
                       progress: bool = True) -> PefStore:
    """:func:`workbench.write_pefs` with the batches shared out among the ranks.

    Called by every rank with the same model, inputs, labels and arguments (checked by
    fingerprint); each rank computes on its own device (:func:`current_ranks`). ``out``
    must be one folder all ranks write to (a shared file system across nodes). Rank r
    computes batches r, r + world_size, ...; rank 0 opens (or checks, to resume) the store
    before and marks it complete after every chunk is on disk, so it reads back as one PEF
    set in the original order. A rank that fails leaves the store incomplete, and the same
    call again (with any number of ranks) computes only the missing batches. Arguments as
    in :func:`workbench.write_pefs`; ``batch_size`` is fixed here (no probe), and the
    resource estimate of a one-process run is not made.
    """
    ranks = current_ranks(device)
    out = user_path(out, "out")
    config = PefConfig(kind, n_values, top_k_classes, include, exclude, batch_size, method, sketch, sketch_seed)
    inputs, labels = split_labels(inputs, labels)
    run = PefRun.prepare(model, inputs, labels, config, ranks.device)
    # every rank reads what is there (nothing is written before the check below), so that all of
    # them resume a store of an older format version in its version, and name it alike
    seen = manifest_bytes(out)  # a store another process writes from now on is found under the writer's lock
    existing = existing_manifest(out, overwrite)
    writer = PefStoreWriter(out, run.manifest(provenance), existing)
    check_same_on_all_ranks(writer.store_id, "model weights, data or PEF arguments")
    if existing is not None:  # every rank refuses a store of another run, as write_pefs does, with the same error
        writer.check_same_run(existing)
    # Rank 0 holds the store's lock from opening it to marking it complete, as write_pefs does: without it a
    # `pefs --overwrite` deleted the chunks of a store write_pefs was writing, which then read as complete.
    with writer.lock(seen) if ranks.is_main else contextlib.nullcontext():
        _write_shared(writer, run, ranks, out, existing, model, progress)
    return PefStore(out)


def _write_shared(writer: PefStoreWriter, run: PefRun, ranks, out, existing, model, progress: bool) -> None:
    """Rank 0 opens the store, every rank writes its batches, rank 0 marks it complete."""
    if ranks.is_main:  # one rank alone checks, cleans and opens the folder
        done = writer.resume(existing) if existing is not None else set()
        writer.open(existing, done)
    barrier("opening the PEF store")
    if not (out / MANIFEST).is_file():  # rank 0 opened it in a folder this rank does not see
        raise StoreError(f"rank {ranks.rank} finds no PEF store at {out}, which rank 0 opened: the store folder must be "
                         "one folder all ranks share (the same path on a shared file system), not a local folder per node")
    done = set(PefStore(out).chunks_on_disk())

    def not_mine(index: int) -> bool:
        return index in done or index % ranks.world_size != ranks.rank

    mine = [b for b in range(run.n_chunks) if not not_mine(b)]
    with pef_mode(model):
        run.stream(writer.write_chunk, skip=not_mine, progress=progress, desc=f"PEFs (rank {ranks.rank})",
                   total=sum(run.batch_len(b) for b in mine))
    barrier("waiting for every rank's PEFs")
    if ranks.is_main:
        missing = sorted(set(range(run.n_chunks)) - set(writer.chunks_on_disk()))
        if missing:
            raise StoreError(
                f"after every rank finished, chunks {missing[:10]} of {out} are not there: the store folder must be "
                "one folder all ranks share (the same path on a shared file system), not a local folder per node"
            )
        writer.complete()
    barrier("marking the PEF store complete")
