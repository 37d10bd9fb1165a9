"""Causal language models as zero-shot classifiers, so PEFs and NPEFF run on them unchanged.

A prompt template turns each text into a prompt whose next token is the answer
("<review> sentiment :" → " good" / " bad"). :class:`ZeroShotClassifier` wraps an
``AutoModelForCausalLM`` so that its forward returns one logit per class:

- with ``label_words``: the next-token logits of the label words' first tokens, so the
  classes are the label words and p(class | x) is the next-token distribution restricted
  to them (a softmax over those logits);
- with ``label_words=None``: the next-token logits over the whole vocabulary, so the
  classes are token ids; pass ``top_k_classes=k`` to :func:`~workbench.compute_pefs` to keep
  the k most probable tokens as the PEF's slots (method notes, section 1).

The wrapper exposes the language model's parameters under the language model's own
names (``transformer.h.0.attn.c_attn.weight``, not ``lm.transformer...``), so layouts,
decompositions, perturbations and highlights made through the wrapper refer to the bare
model's parameters, and :func:`workbench.analysis.perturb.perturbed` works on either.

Prompts are padded on the left: the answer is then read at the last position of every
row, and only that position goes through the output layer (``logits_to_keep=1`` where
the model supports it), so the vocabulary-sized output is computed once per example
rather than once per token.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .loading import in_float32, load_saved, load_saved_tokenizer
from .prompt import PROMPT_FILE, check_template, prompt_of
from .text import warn_truncated

logger = logging.getLogger(__name__)


def label_token_ids(tokenizer, label_words: Sequence[str], prefix: str = " ") -> list[int]:
    """The first token of ``prefix + word`` for every label word, checked to be distinct.

    BPE vocabularies (GPT-2's) spell a word after a space as its own token (" good"), hence
    the default prefix; a word-level tokenizer splits the space off and gives the same token.
    """
    ids = []
    for word in label_words:
        tokens = tokenizer(prefix + word, add_special_tokens=False)["input_ids"]
        if not tokens:
            raise ValueError(f"the label word {word!r} tokenizes to nothing; choose another word")
        unknown = getattr(tokenizer, "unk_token_id", None)
        if unknown is not None and tokens[0] == unknown:
            raise ValueError(f"the label word {word!r} is not in the tokenizer's vocabulary (it reads as "
                             f"{tokenizer.unk_token!r}); choose a word the tokenizer knows")
        if len(tokens) > 1:
            logger.warning("label word %r is %d tokens; its first token stands for it, so any word starting with that "
                           "token counts as %r: choose a label word of one token if the tokenizer has one", word,
                           len(tokens), word)
        ids.append(int(tokens[0]))
    if len(set(ids)) != len(ids):
        clashes = [w for w, i in zip(label_words, ids) if ids.count(i) > 1]
        raise ValueError(
            f"the label words {clashes} start with the same token, so the classifier could not tell them "
            f"apart; choose label words whose first tokens differ (or another prefix than {prefix!r}: "
            "SentencePiece vocabularies may split a leading space into a token of its own)"
        )
    return ids


def _accepts(forward, name: str) -> bool:
    parameters = inspect.signature(forward).parameters
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


class ZeroShotClassifier(nn.Module):
    """A causal language model read as a classifier through a prompt.

    Parameters
    ----------
    lm : a causal language model (``AutoModelForCausalLM``) returning ``.logits`` of shape
        (batch, positions, vocabulary).
    tokenizer : its tokenizer.
    template : the prompt, with ``{text}`` where the example's text goes.
    label_words : the words whose next-token logits are the class logits, in class order
        (class c is ``label_words[c]``); ``None`` makes every vocabulary token a class.
    label_prefix : put before each label word when finding its first token (see
        :func:`label_token_ids`).
    """

    def __init__(
        self,
        lm: nn.Module,
        tokenizer,
        template: str = "{text}",
        label_words: Sequence[str] | None = None,
        *,
        label_prefix: str = " ",
    ):
        super().__init__()
        check_template(template)
        self.lm = lm
        self.tokenizer = tokenizer
        self.template = template
        self.label_words = None if label_words is None else tuple(label_words)
        self.label_prefix = label_prefix
        ids = None if label_words is None else label_token_ids(tokenizer, label_words, label_prefix)
        if ids is not None and len(ids) < 2:
            raise ValueError("a classifier needs at least two label words")
        # A buffer, so it follows the model to its device; not saved with any state dict.
        self.register_buffer("label_ids", None if ids is None else torch.tensor(ids), persistent=False)
        self._extra = {name: _accepts(lm.forward, name) for name in ("position_ids", "logits_to_keep", "use_cache")}

    @property
    def training(self) -> bool:
        """The language model's mode: the wrapper has no layers of its own, so code that
        saves and restores ``model.training`` (``eval_mode``) restores the LM's real mode."""
        lm = self.__dict__.get("_modules", {}).get("lm")
        return True if lm is None else lm.training

    @training.setter
    def training(self, mode: bool) -> None:
        pass  # Module.train() sets the flag, then calls train() on the LM, whose flag counts

    @property
    def config(self):
        """The language model's config (its name is recorded with the PEFs)."""
        return getattr(self.lm, "config", None)

    @property
    def n_classes(self) -> int:
        if self.label_ids is None:
            return int(self.lm.get_output_embeddings().weight.shape[0])
        return len(self.label_ids)

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        # The language model's own names: a layout made through the wrapper then fits the
        # bare model too (perturbations, highlights, saved decompositions).
        return self.lm.named_parameters(prefix=prefix, recurse=recurse, remove_duplicate=remove_duplicate)

    def prompts(self, texts: Sequence[str]) -> list[str]:
        return [self.template.format(text=text) for text in texts]

    def encode(
        self, texts: Sequence[str], max_length: int | None = None, *, add_special_tokens: bool = True, warn: bool = True,
        stacklevel: int = 3,
    ) -> dict[str, torch.Tensor]:
        """Prompts of ``texts`` as left-padded ``input_ids`` and ``attention_mask``.

        The tokenizer adds its special tokens as in training (a BOS token for Llama-style
        models; nothing for GPT-2), except those it appends (an EOS): the answer is read after
        the template's last word, and a tokenizer saved with ``add_eos_token=True`` had every
        prediction read after its ``</s>``. Too long prompts lose their *first* tokens, so the
        end of the template, where the answer is read, is always kept.
        """
        texts = list(texts)
        if not texts:
            raise ValueError("no texts to encode")
        rows = self.tokenizer(self.prompts(texts), add_special_tokens=add_special_tokens)["input_ids"]
        appended = self.appended_tokens if add_special_tokens else 0
        rows = [row[: len(row) - appended] for row in rows]
        if max_length is not None:
            if warn:
                warn_truncated(np.flatnonzero([len(row) > max_length for row in rows]), len(rows), max_length, "start",
                               stacklevel=stacklevel)
            rows = [row[-max_length:] for row in rows]
        if any(len(row) == 0 for row in rows):
            raise ValueError("a prompt tokenizes to nothing; check the template and the tokenizer")
        pad = self.tokenizer.pad_token_id
        pad = self.tokenizer.eos_token_id if pad is None else pad
        pad = 0 if pad is None else pad  # masked out anyway
        length = max(len(row) for row in rows)
        input_ids = torch.tensor([[pad] * (length - len(row)) + list(row) for row in rows], dtype=torch.long)
        attention_mask = torch.tensor([[0] * (length - len(row)) + [1] * len(row) for row in rows], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    @property
    def appended_tokens(self) -> int:
        """How many special tokens the tokenizer appends to a text (an EOS, a SEP): 0 for most causal LMs."""
        probe = "a"
        bare = self.tokenizer(probe, add_special_tokens=False)["input_ids"]
        full = self.tokenizer(probe)["input_ids"]
        starts = [k for k in range(len(full) - len(bare) + 1) if full[k: k + len(bare)] == bare]
        return len(full) - starts[-1] - len(bare) if bare and starts else 0  # the last: a BOS may be the probe's token

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, n_classes) logits of the next token after each prompt."""
        logits = self.lm(**self._lm_inputs(input_ids, attention_mask), **self._keep_last).logits[:, -1]  # (batch, vocabulary)
        return logits if self.label_ids is None else logits[:, self.label_ids]

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """The language model's output with its ``hidden_states`` (embeddings, then each layer), on the
        prompts as ``forward`` reads them (for ``workbench.analysis.trace`` and ``read_out``), and the logits of
        the last position alone where the model allows it, as ``forward``'s."""
        return self.lm(**self._lm_inputs(input_ids, attention_mask), output_hidden_states=True, **self._keep_last)

    def _lm_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> dict:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        elif not bool(attention_mask[:, -1].all()):
            raise ValueError(
                "some prompts are padded on the right, so their last position is padding, not the place "
                "where the answer is read; pad on the left (ZeroShotClassifier.encode does)"
            )
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._extra["position_ids"]:
            # Left padding must not shift the positions of the real tokens.
            kwargs["position_ids"] = (attention_mask.long().cumsum(dim=-1) - 1).clamp_min(0)
        if self._extra["use_cache"]:
            kwargs["use_cache"] = False
        return kwargs

    @property
    def _keep_last(self) -> dict:
        """Only the last position through the vocabulary-sized output layer, where the LM allows it."""
        return {"logits_to_keep": 1} if self._extra["logits_to_keep"] else {}


def load_zero_shot(folder: str | os.PathLike, prompt: dict | None = None) -> tuple[ZeroShotClassifier, object]:
    """The saved causal language model in ``folder`` read through ``prompt`` (default: the one
    recorded there; keys as :func:`~workbench.models.prompt.save_prompt` writes them), in eval
    mode, and its tokenizer; never touches the network."""
    from transformers import AutoModelForCausalLM

    prompt = prompt_of(folder) if prompt is None else prompt
    if prompt is None:
        raise FileNotFoundError(f"{folder} has no {PROMPT_FILE}: save the prompt with save_prompt(folder, template, "
                                "label_words), or load a sequence classifier with load_classifier")
    tokenizer = load_saved_tokenizer(folder)
    lm = in_float32(load_saved(AutoModelForCausalLM, folder)).eval()
    return ZeroShotClassifier(lm, tokenizer, prompt["template"], prompt["label_words"],
                              label_prefix=prompt.get("label_prefix", " ")).eval(), tokenizer
