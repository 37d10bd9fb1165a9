"""Shared fixtures: small models built here, never downloaded."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Trained embedded models are cached in the checkout, so the suite trains each once per machine.
os.environ.setdefault("NPEFF_WORKBENCH_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "models"))

import pytest
import torch
from torch import nn
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


class ScaleLayer(torch.nn.Module):
    """A layer with no per-example rule: its parameter takes the fallback loop."""

    def __init__(self, n):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.linspace(0.5, 1.5, n))

    def forward(self, x):
        return x * self.scale


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
    from workbench.app.pipeline import run_embedded

    return run_embedded(tmp_path_factory.mktemp("runs") / "demo", progress=False)


@pytest.fixture(scope="session")
def embedded(embedded_run):
    """(run, model, tokenizer, examples, inputs, decomposition) of the embedded run."""
    from workbench.models.embedded import load_default_model, tokenize

    model, tokenizer = load_default_model(embedded_run.model_path)
    examples = embedded_run.examples
    inputs = tokenize(tokenizer, list(examples["text"]))
    return embedded_run, model, tokenizer, examples, inputs, embedded_run.decomposition()


# -- the workbench (widgets, notebooks, browser tests) ------------------------------------

QUICKSTART = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
#: Small settings for the headless quickstart runs of the tests (about 15 s of compute each).
QUICKSTART_SMALL = {"n_examples": 200, "n_components": 6, "n_iters_g_only": 30, "n_iters_joint": 120}
#: Example texts that would run script if any page showed them as HTML.
HOSTILE_TEXTS = (
    '<script>window.__npeffInjected = "script"</script> the movie was great .',
    '<img src=x onerror="window.__npeffInjected = \'img\'"> the plot was awful .',
)


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory):
    """notebooks/quickstart.ipynb run headless (papermill) with QUICKSTART_SMALL: a NotebookRun."""
    from workbench.app.notebook import run_notebook

    return run_notebook(QUICKSTART, tmp_path_factory.mktemp("runs") / "quickstart", QUICKSTART_SMALL, progress=False)


def hostile_copy(run, path: Path):
    """A copy of ``run``'s folder (without its PEFs) in which the top example of each component
    that is some component's argmax reads as HTML and script: a Run."""
    import shutil

    import numpy as np
    import pandas as pd

    from workbench.app.run_folder import EXAMPLES, RUN_RECORD, Run, file_identity
    from workbench.store.files import read_json, write_json

    shutil.copytree(run.path, path, ignore=shutil.ignore_patterns("pefs"))
    examples = pd.read_parquet(path / EXAMPLES)
    column = examples.columns.get_loc("text")
    for k, i in enumerate(np.unique(run.decomposition().W_.argmax(axis=0))):
        examples.iloc[i, column] = HOSTILE_TEXTS[k % 2]
    examples.to_parquet(path / EXAMPLES)
    record = read_json(path / RUN_RECORD)  # the texts were changed on purpose: recorded as the run's own
    record["files"][EXAMPLES] = file_identity(path / EXAMPLES)
    write_json(path / RUN_RECORD, record)
    return Run(path)


@pytest.fixture(scope="session")
def hostile_run(embedded_run, tmp_path_factory):
    """The embedded run with hostile top examples (see hostile_copy)."""
    return hostile_copy(embedded_run, tmp_path_factory.mktemp("runs") / "hostile")


@pytest.fixture(scope="session")
def hostile_quickstart_run(quickstart_run, tmp_path_factory):
    """The quickstart's run folder with hostile top examples (see hostile_copy)."""
    from workbench.app.run_folder import Run

    return hostile_copy(Run(quickstart_run.folder), tmp_path_factory.mktemp("runs") / "hostile-quickstart")


class PaddingLeaks(nn.Module):
    """A convolution over the padded positions (as ConvBERT's and CANINE's are): a padded
    example's logits differ from its logits alone."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.conv = nn.Conv1d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 3)

    def forward(self, input_ids, attention_mask):
        h = self.conv(self.embed(input_ids).transpose(1, 2)).transpose(1, 2)
        kept = attention_mask.unsqueeze(-1).float()
        return self.head((h * kept).sum(1) / kept.sum(1))
