"""NPEFF with the parameter columns split across the ranks (method notes, section 3).

Each rank reads only its columns of X from the store (:func:`load_column_shard`) and holds
its columns of G (or H); the products that sum over columns (X Gᵀ, G Gᵀ, norms) are
all-reduced, and W is replicated. The fit is the single-process fit with the same seed,
up to float rounding: the random initialisation is drawn whole and sliced. The estimators
do the fitting (:meth:`~workbench.npeff.NpeffBase.fit_columns`); this module gives them
their columns and the collectives that join them.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils.validation import check_is_fitted

from ..core.arguments import user_path
from ..core.kinds import kind
from ..core.params import ParameterLayout
from ..core.pefs import DPefs, LrmPefs
from ..npeff import NpeffBase, estimator_for
from ..npeff.data import Columns, examples_per_column
from ..store.files import StoreError, json_default
from ..store.pef_store import PefStore
from .group import (Ranks, all_gather_columns, all_gather_steps, all_reduce_sum, check_same_on_all_ranks,
                    current_ranks)


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


    def split(self) -> Columns:
        """How the fit's columns are split: these, and the collectives that join every rank's."""
        return Columns(self.columns, self.n_kept, self.layout, self.span, reduce=all_reduce_sum,
                       gather=partial(all_gather_columns, bounds=self.bounds), gather_steps=all_gather_steps)


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
        counts += examples_per_column(matrix, np.repeat(np.arange(chunk.n_examples), slots), chunk.n_examples)
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
    pefs = kind(store.kind).pefs_type.from_rows(sp.vstack(pieces, format="csr"), np.concatenate(classes), **common)
    return ColumnShard(pefs, mine, bounds, ranks.rank, kept.size, store.layout, store.info, store.store_id)


def _check_kind(store: PefStore, estimator: NpeffBase) -> None:
    expected = estimator_for(store.kind)
    if not isinstance(estimator, expected):
        raise TypeError(f"{store.path} holds {store.kind!r} PEFs, which {expected.__name__} fits, not {type(estimator).__name__}")


def fit_distributed(estimator: NpeffBase, store: str | os.PathLike | PefStore, *,
                    checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 50) -> NpeffBase:
    """Fit ``estimator`` to a PEF store with its parameter columns split across the ranks.

    Every rank calls it with the same estimator settings (seed included) and store; every
    rank returns the whole fitted estimator (W_ is replicated, G_/H_ gathered), equal to
    ``estimator.fit(load_pefs(store))`` up to float rounding. Only rank 0 need save it.

    ``checkpoint`` (a file path): every ``checkpoint_every`` steps each rank saves its part of
    the fit, to ``checkpoint`` itself on one rank, else to ``NAME.rankR-of-N.EXT`` beside it; the
    same call again resumes where the fit stopped (:meth:`NpeffBase.fit_columns`). A checkpoint
    of another number of ranks is refused: its columns were split otherwise.
    """
    store = store if isinstance(store, PefStore) else PefStore(store)
    _check_kind(store, estimator)
    estimator.check_params()
    ranks = current_ranks(estimator.device)
    settings = {k: v for k, v in estimator.get_params().items() if k not in ("device", "progress")}  # may differ
    # the checkpoint too: saves on one rank's steps and not the other's hung both for the whole timeout
    check_same_on_all_ranks(json.dumps({"settings": settings, "store": store.manifest.get("fingerprints"),
                                        "checkpoint": None if checkpoint is None else str(checkpoint),
                                        "checkpoint_every": checkpoint_every}, sort_keys=True, default=json_default),
                            "estimator settings, store or checkpoint arguments")
    shard = load_column_shard(store, min_nonzero_per_col=estimator.min_nonzero_per_col, ranks=ranks)
    mine = None if checkpoint is None else rank_checkpoint(checkpoint, ranks)
    return estimator.fit_columns(shard.pefs, shard.split(), dict(shard.info, pef_store_id=shard.store_id), device=ranks.device,
                                 checkpoint=mine, checkpoint_every=checkpoint_every)


def rank_checkpoint(path: str | os.PathLike, ranks: Ranks) -> Path:
    """This rank's checkpoint file; StoreError where the checkpoint was made on another number of ranks."""
    path = user_path(path)
    sizes = {int(m.group(1)) for p in path.parent.glob(f"{glob.escape(path.stem)}.rank*-of-*{glob.escape(path.suffix)}")
             if (m := re.fullmatch(rf"{re.escape(path.stem)}\.rank\d+-of-(\d+){re.escape(path.suffix)}", p.name))}
    if path.exists():
        sizes.add(1)
    others = sorted(sizes - {ranks.world_size})
    if others:
        raise StoreError(f"the checkpoint {path} was made by a fit on {others[0]} rank(s), not {ranks.world_size}: each "
                         "rank saved its own columns. Resume with that many ranks, or delete its files (or pass "
                         "another checkpoint path) to start over")
    if ranks.world_size == 1:
        return path
    return path.with_name(f"{path.stem}.rank{ranks.rank}-of-{ranks.world_size}{path.suffix}")


def transform_distributed(estimator: NpeffBase, store: str | os.PathLike | PefStore) -> np.ndarray:
    """Coefficients W (n_examples, n_components) of a store's examples with the components
    fixed, the columns split across ranks; equal to ``estimator.transform(load_pefs(store))``
    up to float rounding. Every rank returns W."""
    store = store if isinstance(store, PefStore) else PefStore(store)
    _check_kind(store, estimator)
    check_is_fitted(estimator)
    estimator.check_same_source(store.info, store.layout)  # as estimator.transform refuses
    ranks = current_ranks(estimator.device)
    # another decomposition or store on one rank gave coefficients of neither, and exit 0
    components = hashlib.sha256(np.ascontiguousarray(estimator.components_).tobytes()
                                + np.asarray(estimator.kept_columns_, dtype=np.int64).tobytes()).hexdigest()
    settings = {k: v for k, v in estimator.get_params().items() if k not in ("device", "progress")}
    check_same_on_all_ranks(json.dumps({"components": components, "settings": settings,
                                        "store": store.manifest.get("fingerprints")}, sort_keys=True, default=json_default),
                            "decomposition or store")
    shard = load_column_shard(store, columns=estimator.kept_columns_, ranks=ranks)
    return estimator.transform_columns(shard.pefs, shard.split(), device=ranks.device)
