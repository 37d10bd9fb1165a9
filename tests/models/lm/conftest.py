"""A tiny GPT-2 trained on the embedded task in prompt form, built here, never downloaded.

Training (2000 steps of 32 prompts) takes about 20-60 s on two CPU cores; the trained model is cached beside the
embedded default model (``$NPEFF_WORKBENCH_CACHE``), so the suite trains it once per machine.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from workbench.models.embedded import cache_root, make_examples, vocabulary
from workbench.models.embedded.task import TASK_VERSION
from workbench.models.lm import ZeroShotClassifier

TEMPLATE = "{text} sentiment :"
LABEL_WORDS = ("bad", "good")  # class 0 = negative, class 1 = positive, as in the embedded task
RECIPE = "2"  # bump when the recipe below changes, so the cached model is rebuilt


def prompt_tokenizer() -> PreTrainedTokenizerFast:
    """Word level over the task's words plus the prompt's; adds no special tokens."""
    words = ["[PAD]", "[UNK]", *vocabulary(), "sentiment", ":"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]")


def _train(tokenizer, n_steps: int = 2000, seed: int = 0) -> GPT2LMHeadModel:
    """Next-token cross-entropy over the whole vocabulary at the answer position (28k parameters)."""
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=40, n_embd=32, n_layer=2, n_head=2,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None, eos_token_id=None,
    )
    vocabulary_wide = ZeroShotClassifier(GPT2LMHeadModel(config), tokenizer, TEMPLATE)
    answers = ZeroShotClassifier(vocabulary_wide.lm, tokenizer, TEMPLATE, LABEL_WORDS).label_ids
    train = make_examples(4000, seed=seed + 5000)
    encoded = vocabulary_wide.encode(train["text"])
    targets = answers[torch.tensor(train["label"].to_numpy())]
    optimizer = torch.optim.AdamW(vocabulary_wide.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only add overhead
    try:
        vocabulary_wide.train()
        for _ in range(n_steps):
            rows = torch.randint(0, len(train), (32,), generator=generator)
            logits = vocabulary_wide(**{k: v[rows] for k, v in encoded.items()})
            loss = torch.nn.functional.cross_entropy(logits, targets[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return vocabulary_wide.lm.eval()


def trained_lm_path() -> str:
    """The cached trained model's folder, trained on first use (written aside, then renamed)."""
    final = cache_root() / f"tiny-gpt2-prompt-task{TASK_VERSION}-recipe{RECIPE}"
    if (final / "config.json").is_file():
        return str(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        _train(prompt_tokenizer()).save_pretrained(staging)
        try:
            staging.rename(final)
        except OSError:  # another process finished first
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(final)


@pytest.fixture(scope="session")
def prompt_classifier() -> ZeroShotClassifier:
    """The trained tiny GPT-2 read through the label words "bad" / "good"."""
    lm = GPT2LMHeadModel.from_pretrained(trained_lm_path(), local_files_only=True).eval()
    return ZeroShotClassifier(lm, prompt_tokenizer(), TEMPLATE, LABEL_WORDS)


@pytest.fixture(scope="session")
def prompt_examples():
    return make_examples(120, seed=7000)
