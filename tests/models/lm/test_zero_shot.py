"""Causal LMs as zero-shot classifiers: the wrapper's logits, exact PEFs, and NPEFF end to end."""

import numpy as np
import pandas as pd
import pytest
import torch

from workbench import compute_pefs
from workbench.analysis import component_table, top_examples
from workbench.analysis.highlights import token_scores
from workbench.models.lm import ZeroShotClassifier, label_token_ids
from workbench.npeff import LrmNpeff
from workbench.analysis.moves import perturbed
from workbench.analysis.perturb import perturbation_check

from .conftest import LABEL_WORDS, TEMPLATE, prompt_tokenizer


def _unpadded_prompt_ids(classifier, text):
    return torch.tensor([classifier.tokenizer(TEMPLATE.format(text=text), add_special_tokens=False)["input_ids"]])


def test_zero_shot_classifier_gives_the_label_words_next_token_logits(prompt_classifier, prompt_examples):
    texts = list(prompt_examples["text"][:6])
    encoded = prompt_classifier.encode(texts)
    assert (encoded["attention_mask"][:, -1] == 1).all() and (encoded["attention_mask"] == 0).any()  # left padded
    with torch.no_grad():
        logits = prompt_classifier(**encoded)
        for text, row in zip(texts, logits):
            alone = prompt_classifier.lm(input_ids=_unpadded_prompt_ids(prompt_classifier, text)).logits[0, -1]
            torch.testing.assert_close(row, alone[prompt_classifier.label_ids], rtol=1e-5, atol=1e-5)
    assert prompt_classifier.label_ids.tolist() == label_token_ids(prompt_classifier.tokenizer, LABEL_WORDS)
    assert prompt_classifier.n_classes == 2


def test_trained_prompt_model_classifies_the_task(prompt_classifier, prompt_examples):
    """Measured: 97.8% on 600 held-out prompts after 2000 training steps."""
    with torch.no_grad():
        predictions = prompt_classifier(**prompt_classifier.encode(prompt_examples["text"])).argmax(-1).numpy()
    assert np.mean(predictions == prompt_examples["label"].to_numpy()) >= 0.9


def test_lm_pefs_equal_a_plain_autograd_loop(prompt_classifier, prompt_examples):
    """Hooks path through the wrapper (left padding, tied embeddings) vs one unpadded
    example at a time through the bare LM, one autograd.grad per label word."""
    texts = list(prompt_examples["text"][:8])
    pefs = compute_pefs(prompt_classifier, prompt_classifier.encode(texts), n_values=None, progress=False)
    lm, ids = prompt_classifier.lm, prompt_classifier.label_ids
    params = [p for _, p in lm.named_parameters()]
    expected = []
    for text in texts:
        log_p = torch.log_softmax(lm(input_ids=_unpadded_prompt_ids(prompt_classifier, text)).logits[0, -1, ids], -1)
        rows = []
        for y in log_p.argsort(descending=True):  # slots in order of probability
            grads = torch.autograd.grad(log_p[y], params, retain_graph=True)
            rows.append(log_p[y].detach().mul(0.5).exp() * torch.cat([g.reshape(-1) for g in grads]))
        expected.append(torch.stack(rows))
    expected = torch.stack(expected).numpy()  # (n, slots, n_parameters)
    assert pefs.layout.names == tuple(n for n, _ in lm.named_parameters())
    np.testing.assert_allclose(pefs.dense(), expected, atol=2e-6 * np.abs(expected).max())
    loop = compute_pefs(prompt_classifier, prompt_classifier.encode(texts), n_values=None, method="loop", progress=False)
    np.testing.assert_allclose(pefs.dense(), loop.dense(), atol=2e-6 * np.abs(expected).max())


def test_vocabulary_classes_keep_the_top_k_tokens(prompt_classifier, prompt_examples):
    whole_vocabulary = ZeroShotClassifier(prompt_classifier.lm, prompt_classifier.tokenizer, TEMPLATE)
    assert whole_vocabulary.n_classes == len(prompt_classifier.tokenizer)
    encoded = whole_vocabulary.encode(prompt_examples["text"][:5])
    hooks = compute_pefs(whole_vocabulary, encoded, top_k_classes=3, n_values=None, progress=False)
    loop = compute_pefs(whole_vocabulary, encoded, top_k_classes=3, n_values=None, method="loop", progress=False)
    assert hooks.classes.shape == (5, 3) and hooks.logits.shape == (5, len(prompt_classifier.tokenizer))
    np.testing.assert_array_equal(hooks.classes, loop.classes)
    np.testing.assert_allclose(hooks.dense(), loop.dense(), atol=2e-6 * np.abs(loop.dense()).max())
    # The trained model answers with a label word: its most probable token is one.
    assert set(hooks.classes[:, 0]) <= set(prompt_classifier.label_ids.tolist())


def test_perturbed_works_through_the_wrapper(prompt_classifier, prompt_examples):
    encoded = prompt_classifier.encode(prompt_examples["text"][:4])
    pefs = compute_pefs(prompt_classifier, encoded, n_values=None, progress=False)
    delta = np.random.default_rng(0).normal(size=pefs.n_parameters) * 0.05
    before = [p.detach().clone() for p in prompt_classifier.lm.parameters()]
    with torch.no_grad():
        original = prompt_classifier(**encoded)
        with perturbed(prompt_classifier, pefs.layout, delta):
            through_wrapper = prompt_classifier(**encoded)
        with perturbed(prompt_classifier.lm, pefs.layout, delta):  # the same layout fits the bare LM
            through_lm = prompt_classifier(**encoded)
    assert not torch.allclose(original, through_wrapper)
    torch.testing.assert_close(through_wrapper, through_lm, rtol=0, atol=0)
    assert all(torch.equal(p, q) for p, q in zip(prompt_classifier.lm.parameters(), before))


def test_npeff_runs_end_to_end_on_the_language_model(prompt_classifier, prompt_examples):
    encoded = prompt_classifier.encode(prompt_examples["text"])
    labels = prompt_examples["label"].to_numpy()
    pefs = compute_pefs(prompt_classifier, encoded, labels, n_values=2048, progress=False)
    decomposition = LrmNpeff(6, n_iters_g_only=20, n_iters_joint=60, seed=0, progress=False).fit(pefs)
    losses = decomposition.loss_history_["joint"][:, 1]
    assert losses[-1] < losses[0]
    table = component_table(
        decomposition.W_, decomposition.components_, labels=pefs.labels, predictions=pefs.predictions,
        attributes=pd.DataFrame({"strategy": prompt_examples["strategies"]}), n_top=10,
    )
    assert len(table) == 6 and table["mass"].sum() == pytest.approx(1.0)
    assert {"label_purity", "strategy", "strategy_purity", "accuracy"} <= set(table.columns)

    top = top_examples(decomposition.W_, 0, 10)
    result = perturbation_check(prompt_classifier, decomposition, 0, encoded, labels, top, epsilon=0.1)
    assert result.kl_top["+"] > 0 and np.isfinite(result.kl_ratio)

    rows = {k: v[top[:4]] for k, v in encoded.items()}
    scores = token_scores(prompt_classifier, decomposition, 0, rows)
    for s, mask in zip(scores, rows["attention_mask"]):
        assert len(s.scores) == int(mask.sum())  # the unpadded tokens, padding on the left
        assert s.scores.sum() + s.head_share == pytest.approx(1.0, abs=1e-6)


def test_right_padding_and_bad_settings_are_refused(prompt_classifier):
    encoded = prompt_classifier.encode(["the movie was good .", "the acting was not very bad for me ."])
    right = {k: torch.flip(v, dims=[1]) for k, v in encoded.items()}  # padding moved to the right
    with pytest.raises(ValueError, match="pad on the left"):
        prompt_classifier(**right)
    with pytest.raises(ValueError, match="no '\\{text\\}' slot"):
        ZeroShotClassifier(prompt_classifier.lm, prompt_tokenizer(), "sentiment :", LABEL_WORDS)
    with pytest.raises(ValueError, match="same token"):
        ZeroShotClassifier(prompt_classifier.lm, prompt_tokenizer(), TEMPLATE, ("good", "good"))
    with pytest.raises(ValueError, match="at least two"):
        ZeroShotClassifier(prompt_classifier.lm, prompt_tokenizer(), TEMPLATE, ("good",))


def test_encode_keeps_the_end_of_long_prompts(prompt_classifier):
    from workbench.models.text import TruncationWarning

    with pytest.warns(TruncationWarning, match=r"1 of 1 texts are longer than max_length=4 tokens and lost their start"):
        encoded = prompt_classifier.encode(["the movie was good . the acting was bad ."], max_length=4)
    tokens = prompt_classifier.tokenizer.convert_ids_to_tokens(encoded["input_ids"][0].tolist())
    assert tokens == ["bad", ".", "sentiment", ":"]


def test_wrapper_mode_is_the_language_models(prompt_classifier, prompt_examples):
    """eval_mode restores ``model.training``; for the wrapper that must be the LM's own mode,
    or computing PEFs would leave the LM with dropout switched on."""
    assert not prompt_classifier.training and not prompt_classifier.lm.training
    compute_pefs(prompt_classifier, prompt_classifier.encode(prompt_examples["text"][:2]), progress=False)
    assert not prompt_classifier.lm.training and not any(m.training for m in prompt_classifier.lm.modules())
    prompt_classifier.train()
    assert prompt_classifier.training and prompt_classifier.lm.training
    prompt_classifier.eval()
    assert not prompt_classifier.lm.training


def test_an_appended_eos_is_left_off_so_the_answer_is_read_after_the_template(prompt_classifier, prompt_examples):
    """A tokenizer saved with add_eos_token=True (a "$A </s>" post-processor) had every prediction read after its
    </s>, not after the template's last word; a BOS it puts first stays, as in training."""
    from tokenizers import processors

    tokenizer = prompt_tokenizer()
    pad, unk = tokenizer.convert_tokens_to_ids("[PAD]"), tokenizer.convert_tokens_to_ids("[UNK]")
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="[UNK] $A [PAD]", special_tokens=[("[UNK]", unk), ("[PAD]", pad)])  # a BOS first and an EOS last
    with_eos = ZeroShotClassifier(prompt_classifier.lm, tokenizer, TEMPLATE, LABEL_WORDS)
    texts = list(prompt_examples["text"][:4])
    encoded = with_eos.encode(texts)
    for text, ids, mask in zip(texts, encoded["input_ids"], encoded["attention_mask"]):
        bare = _unpadded_prompt_ids(prompt_classifier, text)[0].tolist()
        assert ids[mask.bool()].tolist() == [unk, *bare]
    with torch.no_grad():
        logits = with_eos(**encoded)
        for text, row in zip(texts, logits):
            read_here = prompt_classifier.lm(input_ids=torch.tensor([[unk, *_unpadded_prompt_ids(prompt_classifier, text)[0]]]))
            torch.testing.assert_close(row, read_here.logits[0, -1][prompt_classifier.label_ids], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("max_length", [64, 4])
def test_an_appended_eos_is_left_off_the_token_flags_and_spans_too(prompt_classifier, prompt_examples, max_length):
    """The inputs lost the EOS but the flags, spans and words kept it: one more per row than its tokens, and every
    top-examples page of such a run failed ('6 special flags for 5 token scores'); cut, they were one token off."""
    from tokenizers import processors

    from workbench.models.text import encode_texts

    tokenizer = prompt_tokenizer()
    pad = tokenizer.convert_tokens_to_ids("[PAD]")
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="$A [PAD]", special_tokens=[("[PAD]", pad)])
    with_eos = ZeroShotClassifier(prompt_classifier.lm, tokenizer, TEMPLATE, LABEL_WORDS)
    texts = list(prompt_examples["text"][:3])
    encoded = encode_texts(with_eos, tokenizer, texts, max_length, spans=True, warn=False)
    for k, text in enumerate(texts):
        mask = encoded.inputs["attention_mask"][k].bool()
        tokens = tokenizer.convert_ids_to_tokens(encoded.inputs["input_ids"][k][mask].tolist())
        assert len(encoded.special[k]) == len(encoded.spans[k]) == len(tokens)
        prompt = encoded.strings[k]
        assert [prompt[a:b] for a, b in encoded.spans[k]] == tokens  # each span spells its own token
        assert tokens[-2:] == ["sentiment", ":"] and encoded.special[k][-2:].all()  # the template, not the text


def test_the_text_s_first_word_is_spelled_whole_where_its_token_takes_the_template_s_space(prompt_classifier):
    """GPT-2's 'Ġthe' and Llama's '▁the' after "Review: " hold the template's space and the text's first word:
    its span began one character before the text, so the word was shown as '␣', could never be its example's
    strongest word and was counted as '␣' among a component's top tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from workbench.models.text import encode_texts, spelled_tokens

    words = ["[PAD]", "[UNK]", *("▁" + w for w in ("review", ":", "sentiment", "bad", "good", "the", "film", "was"))]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                        padding_side="left")
    classifier = ZeroShotClassifier(prompt_classifier.lm, tokenizer, "review : {text} sentiment :", LABEL_WORDS)
    texts = ["the film was bad", "good"]
    encoded = encode_texts(classifier, tokenizer, texts, 64, spans=True, warn=False)
    for row, text in enumerate(texts):
        spans = encoded.text_spans(row)
        in_text = [span for span, template in zip(spans, encoded.template[row]) if not template]
        assert in_text[0] == (0, len(text.split()[0]))
        tokens = tokenizer.convert_ids_to_tokens(encoded.inputs["input_ids"][row][encoded.inputs["attention_mask"][row].bool()].tolist())
        shown = [w for w, template in zip(spelled_tokens(text, tokens, spans), encoded.template[row]) if not template]
        assert shown == text.split()


def test_a_cut_prompt_is_warned_of_at_the_caller_s_line_as_a_cut_text_is(prompt_classifier):
    """A zero-shot run's warning named workbench/models/text.py, not the user's line: a filter on the user's module
    did not catch it."""
    import inspect
    import warnings

    from workbench.models.text import TruncationWarning, encode_texts

    def entry_point():  # as run_model calls encode_texts for its caller
        return encode_texts(prompt_classifier, prompt_classifier.tokenizer, ["good " * 60], 8)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        entry_point()
    cut = [w for w in caught if issubclass(w.category, TruncationWarning)]
    assert cut and (cut[0].filename, cut[0].lineno) == (__file__, line)
