"""NPEFF on several processes (GPUs, nodes) with ``torch.distributed``, launched by ``torchrun``.

Three jobs, each run by every process ("rank") of the job with the same arguments:

- :func:`write_pefs_sharded`: rank r computes the batches b with b % world_size == r and
  writes them as chunks of one ordinary PEF store (a folder every rank can write to);
  rank 0 writes the manifest first and marks the store complete only once every chunk
  is on disk. :func:`workbench.store.load_pefs` then reads the whole set in example order.
  A resumed run (same arguments, any number of ranks) computes only the missing chunks.
- :func:`fit_distributed`: the parameter columns are split across ranks (method notes,
  section 3): each rank reads only its columns of X from the store and holds its columns
  of G (or H); the products that sum over columns (X Gᵀ, G Gᵀ, norms) are all-reduced, and
  W is replicated. The fit is the single-process fit with the same seed, up to float
  rounding: the random initialisation is drawn whole and sliced.
- :func:`transform_distributed`: coefficients of a store's examples with the components
  fixed, split the same way.

Backends: NCCL when the device is CUDA (each rank uses ``cuda:LOCAL_RANK``), gloo on the
CPU. Every collective has a timeout, and a failed one (a rank died, the network went)
raises :class:`DistributedError` on the ranks still alive; nothing is then marked
complete or saved. Run with one process (no torchrun), every function works unchanged.

Why not DistributedDataParallel: NPEFF is not a gradient-descent training loop over
examples; its fit splits the parameter axis, which needs only all-reduce and all-gather.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist

from .device import resolve_device
from .npeff import DNpeff, LrmNpeff, _check_finite_norms, _examples_per_column, _prepare, _Prepared, _to_torch_csr
from .params import ParameterLayout
from .pefs import DPefs, LrmPefs
from .store import MANIFEST, PefStore, StoreError, write_json

logger = logging.getLogger(__name__)

#: How long a collective waits for the other ranks before the job fails. Long enough for
#: the slowest rank's share of the PEFs between two synchronisations; set it lower in
#: tests so that a dead peer cannot hang them.
DEFAULT_TIMEOUT = timedelta(minutes=30)


class DistributedError(RuntimeError):
    """Another rank of the job stopped, could not be reached, or disagrees with this one."""


# ---------------------------------------------------------------------------------------
# The process group
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the job."""

    rank: int
    world_size: int
    device: torch.device  # this rank's compute device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA devices, gloo for the CPU."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def rank_device(device: str | torch.device | None = None) -> torch.device:
    """This rank's device: with CUDA, the GPU of its LOCAL_RANK (as torchrun numbers them)."""
    resolved = resolve_device(device)
    if resolved.type == "cuda" and resolved.index is None and launched_by_torchrun():
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        resolve_device(resolved)  # a clear error where this node has fewer GPUs than ranks
    return resolved


def current_ranks(device: str | torch.device | None = None) -> Ranks:
    """This process's place in the initialised process group (rank 0 of 1 without one).

    ``device`` None: the group's kind of device (CUDA for NCCL, the CPU for gloo)."""
    if dist.is_available() and dist.is_initialized():
        if device is None:
            device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        return Ranks(dist.get_rank(), dist.get_world_size(), rank_device(device))
    return Ranks(0, 1, resolve_device(device))


@contextlib.contextmanager
def process_group(device: str | torch.device | None = None, timeout: timedelta = DEFAULT_TIMEOUT) -> Iterator[Ranks]:
    """Join the job torchrun started (it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
    MASTER_PORT), with NCCL for CUDA and gloo otherwise; leave it on exit.

    Without torchrun's variables this is a job of one process and no group is made. A
    group that is already initialised is used as it is (and left to its owner).
    """
    if dist.is_available() and dist.is_initialized():
        yield current_ranks(device)
        return
    if not launched_by_torchrun():
        yield Ranks(0, 1, resolve_device(device))
        return
    resolved = rank_device(device)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    backend = backend_for(resolved)
    dist.init_process_group(backend, timeout=timeout, device_id=resolved if backend == "nccl" else None)
    ranks = current_ranks(resolved)
    logger.info("rank %d of %d on %s (%s)", ranks.rank, ranks.world_size, resolved, backend)
    try:
        yield ranks
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------
# Collectives: identity for one process, and a clear error when a peer is gone
# ---------------------------------------------------------------------------------------


def _in_group() -> bool:
    """Collectives run whenever a group exists, even of one rank (so one GPU exercises NCCL)."""
    return dist.is_available() and dist.is_initialized()


def _comm_device() -> torch.device:
    """NCCL moves only CUDA tensors; gloo CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@contextlib.contextmanager
def _peers(what: str):
    """Turns a failed collective into a DistributedError that says what it means."""
    try:
        yield
    except DistributedError:
        raise
    except RuntimeError as err:  # gloo and NCCL raise RuntimeError (or its subclass DistError)
        raise DistributedError(
            f"rank {dist.get_rank()} of {dist.get_world_size()}: {what} failed because another rank of the job "
            f"stopped, timed out or could not be reached ({str(err).splitlines()[0][:300]}). Nothing was marked "
            "complete or saved; see the other ranks' logs for the first error, then rerun the same command."
        ) from err


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Σ over ranks of ``t`` (may overwrite ``t``); ``t`` itself with one process."""
    if not _in_group():
        return t
    comm = _comm_device()
    moved = t.to(comm).contiguous()
    with _peers("summing over ranks"):
        dist.all_reduce(moved)
    return moved.to(t.device)


def barrier(what: str) -> None:
    if _in_group():
        with _peers(what):
            # An all-reduce rather than dist.barrier(): it honours the group's timeout on
            # both backends, and NCCL's barrier guesses the device.
            dist.all_reduce(torch.zeros(1, device=_comm_device()))


def _all_gather_columns(local: torch.Tensor, bounds: list[tuple[int, int]]) -> torch.Tensor:
    """The (r, n) matrix whose columns bounds[k] are rank k's ``local`` (r, n_k)."""
    if not _in_group():
        return local
    widest = max(stop - start for start, stop in bounds)
    comm = _comm_device()
    padded = torch.zeros((local.shape[0], widest), dtype=local.dtype, device=comm)
    padded[:, : local.shape[1]] = local.to(comm)
    parts = [torch.empty_like(padded) for _ in bounds]
    with _peers("gathering the components"):
        dist.all_gather(parts, padded)
    return torch.cat([p[:, : stop - start] for p, (start, stop) in zip(parts, bounds)], dim=1).to(local.device)


def check_same_on_all_ranks(text: str, what: str) -> None:
    """Refuse to go on where the ranks hold different ``text`` (e.g. other model weights)."""
    if not _in_group():
        return
    digest = torch.tensor(list(hashlib.sha256(text.encode()).digest()), dtype=torch.uint8, device=_comm_device())
    digests = [torch.empty_like(digest) for _ in range(dist.get_world_size())]
    with _peers(f"comparing {what} across ranks"):
        dist.all_gather(digests, digest)
    differ = [k for k, d in enumerate(digests) if not torch.equal(d, digests[0])]
    if differ:
        raise DistributedError(
            f"ranks {differ} hold other {what} than rank 0: every rank must be started with the same model, "
            "data, seed and arguments"
        )


# ---------------------------------------------------------------------------------------
# Sharded PEFs
# ---------------------------------------------------------------------------------------


def write_pefs_sharded(out: str | os.PathLike, model: torch.nn.Module, inputs, labels=None, *,
                       kind: str = "lrm", n_values: int | None = 65536, top_k_classes: int | None = None,
                       include=None, exclude=None, batch_size: int = 16, method: str = "hooks",
                       device: str | torch.device | None = None, overwrite: bool = False, provenance=None,
                       progress: bool = True) -> PefStore:
    """:func:`workbench.store.write_pefs` with the batches shared out among the ranks.

    Called by every rank with the same model, inputs, labels and arguments (checked by
    fingerprint); each rank computes on its own device (:func:`current_ranks`). ``out``
    must be one folder all ranks write to (a shared file system across nodes). Rank r
    computes batches r, r + world_size, ...; rank 0 opens (or checks, to resume) the store
    before and marks it complete after every chunk is on disk, so it reads back as one PEF
    set in the original order. A rank that fails leaves the store incomplete, and the same
    call again (with any number of ranks) computes only the missing batches. Arguments as
    in :func:`workbench.store.write_pefs`; ``batch_size`` is fixed here (no probe), and the
    resource estimate of a one-process run is not made.
    """
    from tqdm.auto import tqdm

    from . import store as pef_store
    from .estimate import check_chunk_finite
    from .fisher import PefConfig, eval_mode, iter_pef_chunks, make_plan, n_inputs, split_labels

    ranks = current_ranks(device)
    out = Path(out)
    config = PefConfig(kind, n_values, top_k_classes, include, exclude, batch_size, method)
    model.to(ranks.device)
    inputs, labels = split_labels(inputs, labels)
    plan = make_plan(model, config)
    n = n_inputs(inputs)
    manifest = pef_store._new_manifest(model, inputs, labels, config, plan, n, provenance)
    check_same_on_all_ranks(pef_store.store_id(manifest), "model weights, data or PEF arguments")
    if ranks.is_main:  # one rank alone checks, cleans and opens the folder
        existing = pef_store._existing_manifest(out, overwrite)
        if existing is not None:
            pef_store._check_resume(out, existing, manifest)
        done = pef_store._valid_chunks(out, manifest, existing) if existing is not None else set()
        pef_store._open_store(out, manifest, created=existing is None)
        if existing is not None and existing.get("complete") and len(done) < manifest["n_chunks"]:
            write_json(out / MANIFEST, manifest)  # chunks are missing: no longer complete until they are back
    barrier("opening the PEF store")
    done = set(PefStore(out).chunks_on_disk())

    def not_mine(index: int) -> bool:
        return index in done or index % ranks.world_size != ranks.rank

    identity = pef_store.store_id(manifest)
    mine = [b for b in range(manifest["n_chunks"]) if not not_mine(b)]
    with eval_mode(model), tqdm(total=sum(pef_store._batch_len(b, batch_size, n) for b in mine), unit="ex",
                                desc=f"PEFs (rank {ranks.rank})", disable=not progress) as bar:
        for index, size, chunk in iter_pef_chunks(model, inputs, labels, config, plan, ranks.device, skip=not_mine):
            if chunk is not None:
                check_chunk_finite(chunk, index * batch_size)
                pef_store._write_chunk(out, index, chunk, identity)
                bar.update(size)
    barrier("waiting for every rank's PEFs")
    if ranks.is_main:
        missing = sorted(set(range(manifest["n_chunks"])) - set(PefStore(out).chunks_on_disk()))
        if missing:
            raise StoreError(
                f"after every rank finished, chunks {missing[:10]} of {out} are not there: the store folder must be "
                "one folder all ranks share (the same path on a shared file system), not a local folder per node"
            )
        write_json(out / MANIFEST, dict(manifest, complete=True))
    barrier("marking the PEF store complete")
    return PefStore(out)


# ---------------------------------------------------------------------------------------
# Column shards of a store
# ---------------------------------------------------------------------------------------


@dataclass
class ColumnShard:
    """This rank's columns of a PEF store: all examples, some kept parameters.

    ``pefs`` is an ordinary LrmPefs/DPefs over just these columns (its layout anonymous);
    ``columns`` are their indices on the store's flat parameter axis.
    """

    pefs: LrmPefs | DPefs
    columns: np.ndarray  # (n_mine,) parameter indices, ascending
    bounds: list[tuple[int, int]]  # every rank's range within all kept columns
    rank: int
    n_kept: int  # kept columns over all ranks
    layout: ParameterLayout  # the store's
    info: dict
    store_id: str  # the store's identity (its run), recorded by the fit

    @property
    def span(self) -> slice:
        start, stop = self.bounds[self.rank]
        return slice(start, stop)


def _chunk_matrix(chunk, n_parameters: int) -> sp.csr_matrix:
    n_rows = chunk.row_offsets.shape[0] - 1
    return sp.csr_matrix((chunk.values, chunk.indices, chunk.row_offsets), shape=(n_rows, n_parameters))


def _examples_per_parameter(store: PefStore, ranks: Ranks) -> np.ndarray:
    """How many examples use each parameter, counted over the chunks shared out among ranks."""
    m = store.layout.n_parameters
    counts = np.zeros(m, dtype=np.int64)
    for index in range(ranks.rank, store.n_chunks, ranks.world_size):
        chunk = store.read_chunk(index)
        matrix = _chunk_matrix(chunk, m)
        slots = matrix.shape[0] // max(chunk.n_examples, 1)
        counts += _examples_per_column(matrix, np.repeat(np.arange(chunk.n_examples), slots), chunk.n_examples)
    return all_reduce_sum(torch.from_numpy(counts)).numpy()


def split_columns(weights: np.ndarray, world_size: int) -> list[tuple[int, int]]:
    """Contiguous ranges of about equal total weight, one per rank, none empty."""
    n = weights.shape[0]
    if n < world_size:
        raise ValueError(
            f"only {n} parameters are kept, fewer than the {world_size} ranks; use fewer ranks (or a lower "
            "min_nonzero_per_col, or more values per example)"
        )
    cumulative = np.cumsum(weights, dtype=np.float64)
    cuts = np.searchsorted(cumulative, cumulative[-1] * np.arange(1, world_size) / world_size, side="right")
    # every range at least one column: cut k lies in [k + 1, n - (world_size - 1 - k)]
    cuts = np.clip(cuts, np.arange(1, world_size), n - np.arange(world_size - 1, 0, -1))
    cuts = np.maximum.accumulate(cuts)
    bounds = [0, *cuts.tolist(), n]
    return [(bounds[k], bounds[k + 1]) for k in range(world_size)]


def load_column_shard(store: str | os.PathLike | PefStore, *, min_nonzero_per_col: int = 1,
                      columns: np.ndarray | None = None, ranks: Ranks | None = None) -> ColumnShard:
    """This rank's share of a complete store's parameter columns, read chunk by chunk.

    The kept columns are the parameters non-zero in at least ``min_nonzero_per_col``
    examples (as :class:`~workbench.npeff.LrmNpeff` prunes them), or the given ``columns``
    (a fitted decomposition's ``kept_columns_``). They are split in contiguous ranges of
    about equal numbers of non-zeros, so each rank holds about 1/world_size of X.
    """
    store = store if isinstance(store, PefStore) else PefStore(store)
    ranks = ranks or current_ranks()
    if not store.complete:
        store.load()  # raises the store's own "incomplete, resume it" error
    counts = _examples_per_parameter(store, ranks)
    if columns is None:
        kept = np.flatnonzero(counts >= min_nonzero_per_col)
        if kept.size == 0:
            raise ValueError(
                f"no parameter is non-zero in at least min_nonzero_per_col={min_nonzero_per_col} examples; "
                "lower min_nonzero_per_col or keep more values per example (n_values)"
            )
    else:
        kept = np.asarray(columns, dtype=np.int64)
    bounds = split_columns(counts[kept] + 1, ranks.world_size)
    start, stop = bounds[ranks.rank]
    mine = kept[start:stop]
    m = store.layout.n_parameters
    pieces, norms, labels, logits, classes = [], [], [], [], []
    for index in range(store.n_chunks):
        chunk = store.read_chunk(index)
        pieces.append(_chunk_matrix(chunk, m)[:, mine])
        norms.append(chunk.frobenius_norms)
        labels.append(chunk.labels)
        logits.append(chunk.logits)
        classes.append(chunk.classes)
    common = dict(
        frobenius_norms=np.concatenate(norms), labels=np.concatenate(labels), logits=np.concatenate(logits),
        layout=ParameterLayout.anonymous(mine.size), info=store.info,
    )
    matrix = sp.vstack(pieces, format="csr")
    pefs = (LrmPefs(X=matrix, classes=np.concatenate(classes), **common) if store.kind == "lrm"
            else DPefs(F=matrix, **common))
    return ColumnShard(pefs, mine, bounds, ranks.rank, kept.size, store.layout, store.info, store.store_id)


# ---------------------------------------------------------------------------------------
# Fitting with the columns split across ranks
# ---------------------------------------------------------------------------------------


def _estimator_for(store: PefStore, estimator):
    expected = LrmNpeff if store.kind == "lrm" else DNpeff
    if not isinstance(estimator, expected):
        raise TypeError(f"{store.path} holds {store.kind!r} PEFs, which {expected.__name__} fits, not {type(estimator).__name__}")


def _prepared(estimator, shard: ColumnShard, device: torch.device, with_transpose: bool) -> tuple[_Prepared, sp.csr_matrix]:
    local = shard.pefs
    matrix, squared_norm = estimator._matrix(local, np.arange(local.n_parameters), all_reduce_sum)
    if with_transpose:
        data = _prepare(matrix, squared_norm, local.n_examples, device)
    else:
        data = _Prepared(_to_torch_csr(matrix, device), None, squared_norm, local.n_examples)
    return replace(data, reduce=all_reduce_sum, columns=shard.span), matrix


def fit_distributed(estimator: LrmNpeff | DNpeff, store: str | os.PathLike | PefStore) -> LrmNpeff | DNpeff:
    """Fit ``estimator`` to a PEF store with its parameter columns split across the ranks.

    Every rank calls it with the same estimator settings (seed included) and store; every
    rank returns the whole fitted estimator (W_ is replicated, G_/H_ gathered), equal to
    ``estimator.fit(load_pefs(store))`` up to float rounding. Only rank 0 need save it.
    """
    store = store if isinstance(store, PefStore) else PefStore(store)
    _estimator_for(store, estimator)
    estimator._validate_params()
    ranks = current_ranks(estimator.device)
    settings = {k: v for k, v in estimator.get_params().items() if k not in ("device", "progress")}  # may differ
    check_same_on_all_ranks(json.dumps({"settings": settings, "store": store.manifest.get("fingerprints")}, sort_keys=True),
                            "estimator settings or store")
    shard = load_column_shard(store, min_nonzero_per_col=estimator.min_nonzero_per_col, ranks=ranks)
    local = shard.pefs
    if local.n_examples == 0:
        raise ValueError("the PEF set is empty: there are no examples to fit")
    _check_finite_norms(local.frobenius_norms)
    if estimator.n_components > local.n_examples:
        raise ValueError(
            f"n_components={estimator.n_components} is larger than the number of examples ({local.n_examples}); "
            "use at most as many components as examples"
        )
    device = ranks.device
    data, matrix = _prepared(estimator, shard, device, with_transpose=True)
    if isinstance(estimator, LrmNpeff):
        state, history = estimator._fit_arrays(data, local.n_slots, shard.n_kept, device)
        W, components = state["W"], state["G"]
        estimator.loss_history_ = {k: np.asarray(v, dtype=np.float64).reshape(-1, 2) for k, v in history.items()}
        estimator.n_classes_ = local.n_slots
    else:
        W, components, history = estimator._fit_arrays(data, shard.n_kept, data.total(float(matrix.sum())), device)
        estimator.loss_history_ = {"joint": np.asarray(history, dtype=np.float64).reshape(-1, 2)}
        estimator.n_classes_ = local.n_classes
    estimator.W_ = W.cpu().numpy()
    setattr(estimator, estimator._components_name + "_", _all_gather_columns(components, shard.bounds).cpu().numpy())
    estimator.kept_columns_ = _all_gather_columns(
        torch.from_numpy(shard.columns[None, :]).to(device), shard.bounds
    ).cpu().numpy()[0].astype(np.int64)
    estimator.n_parameters_ = shard.layout.n_parameters
    estimator.layout_ = shard.layout
    estimator.pef_info_ = dict(shard.info, pef_store_id=shard.store_id)
    return estimator


def transform_distributed(estimator: LrmNpeff | DNpeff, store: str | os.PathLike | PefStore) -> np.ndarray:
    """Coefficients W (n_examples, n_components) of a store's examples with the components
    fixed, the columns split across ranks; equal to ``estimator.transform(load_pefs(store))``
    up to float rounding. Every rank returns W."""
    store = store if isinstance(store, PefStore) else PefStore(store)
    _estimator_for(store, estimator)
    estimator._check_fitted()
    if store.layout != estimator.layout_:
        raise ValueError(
            f"{store.path} holds PEFs over other parameters ({store.layout.n_parameters}) than the decomposition "
            f"({estimator.layout_.n_parameters}); compute them with the same model and parameter filter"
        )
    ranks = current_ranks(estimator.device)
    shard = load_column_shard(store, columns=estimator.kept_columns_, ranks=ranks)
    _check_finite_norms(shard.pefs.frobenius_norms)
    device = ranks.device
    data, _ = _prepared(estimator, shard, device, with_transpose=False)
    components = torch.from_numpy(estimator.components_[:, shard.span]).contiguous().to(device)
    n_slots = shard.pefs.n_slots if isinstance(shard.pefs, LrmPefs) else 1
    return estimator._coefficients(data, components, n_slots).cpu().numpy()
