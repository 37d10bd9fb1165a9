"""Shared fixtures: small models built here, never downloaded."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Trained embedded models are cached in the checkout, so the suite trains each once per machine.
os.environ.setdefault("NPEFF_WORKBENCH_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "models"))

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification


def tiny_bert(n_classes: int = 3, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=24,
        num_labels=n_classes,
    )
    return BertForSequenceClassification(config).eval()


def tiny_bert_inputs(n: int = 9, length: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    """Token ids with varied padding, so batching and trimming are exercised."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 40, (n, length), generator=g)
    mask = torch.ones_like(ids)
    for i in range(n):
        used = length - (i % 4)
        mask[i, used:] = 0
        ids[i, used:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture
def bert3():
    return tiny_bert(3)


@pytest.fixture
def bert_inputs():
    return tiny_bert_inputs()


@pytest.fixture(scope="session")
def embedded_run(tmp_path_factory):
    """The main job's run folder with its default settings (about 15 s once the model is cached)."""
    from workbench.pipeline import run_embedded

    return run_embedded(tmp_path_factory.mktemp("runs") / "demo", progress=False)


@pytest.fixture(scope="session")
def embedded(embedded_run):
    """(run, model, tokenizer, examples, inputs, decomposition) of the embedded run."""
    from workbench.embedded import load_default_model, tokenize

    model, tokenizer = load_default_model(embedded_run.model_path)
    examples = embedded_run.examples
    inputs = tokenize(tokenizer, list(examples["text"]))
    return embedded_run, model, tokenizer, examples, inputs, embedded_run.decomposition()
