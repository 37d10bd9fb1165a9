"""Texts read under the tokenizers of other families than MiniLM's WordPiece: GPT-2's byte-level BPE (no padding
token), Llama 2's SentencePiece BPE (no pre-tokenizer: it splits no words) and a T5-like Unigram with an end
token. Each is trained here on a few sentences, offline, and run end to end: the cards show the text as written
and the words named and marked are whole words of it."""

import html
import re

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from workbench import RunExplorer, report, run_model

TEXTS = ["The café was lovely, naïve but warm!", "I hated the soup… it was cold 😞", "Great film — truly great.",
         "Don't go there; the service is awful.", "What a wonderful day 🌞 in Zürich", "The plot was dull and slow.",
         "Brilliant acting, superb score!", "Never again: rude staff, bad food.", "It's fine, I guess?",
         "Amazing!!! Loved every minute.", "The hotel's room was dirty & noisy.", "A delightful, charming story.",
         "Terrible. Just terrible.", "Crème brûlée was perfect 👌", "The movie bored me to tears.",
         "Good value, friendly people.", "Worst purchase ever (don't buy).", "Everything was just right  (two spaces)."]
LABELS = [1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1]
MARKS = ("Ġ", "▁", "##")


def byte_level_bpe() -> PreTrainedTokenizerFast:
    """GPT-2's kind: 'Ġ' before a word, no special tokens added, and no padding token."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>")


def llama2_bpe() -> PreTrainedTokenizerFast:
    """Llama 2's (and Mistral's, Gemma's) kind: spaces made '▁' by the normalizer, no pre-tokenizer (so a text is one
    word to word_ids), a BOS before each text."""
    backend = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")  # pieces within words, as SentencePiece's
    backend.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=250, special_tokens=["<unk>", "<s>", "</s>"]))
    backend.pre_tokenizer = None
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B:1",
                                                           special_tokens=[("<s>", backend.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<unk>")


def unigram_with_eos() -> PreTrainedTokenizerFast:
    """T5's kind: a Unigram model, '▁' words split at spaces, an EOS after each text, padded on the left. Its pieces
    are listed, not trained (Unigram's trainer runs in parallel and picks other pieces from run to run): the
    characters of the texts, alone and after '▁', and a few words and pieces, longer ones likelier."""
    characters = sorted(set("".join(TEXTS).replace(" ", "")) | set("...'"))
    pieces = ["▁", *characters, *("▁" + c for c in characters), "▁the", "▁was", "▁great", "ing", "er", "▁a", "ly",
              "▁good", "▁bad", "▁terrible", "ful", "▁in", "▁it", "ed", "▁not", "▁Cr", "ème"]
    vocab = [("<pad>", 0.0), ("<unk>", 0.0), ("</s>", 0.0)] + [(p, -10.0 + len(p)) for p in dict.fromkeys(pieces)]
    backend = Tokenizer(models.Unigram(vocab, unk_id=1))
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
    backend.decoder = decoders.Metaspace(prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B:1 </s>:1",
                                                           special_tokens=[("</s>", backend.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                   padding_side="left")


def roberta_bpe() -> PreTrainedTokenizerFast:
    """RoBERTa's kind: byte-level BPE whose offsets leave out the space ('Ġ' trimmed), <s> and </s> around the text."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=True)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", cls_token="<s>", sep_token="</s>")


def uncased_wordpiece() -> PreTrainedTokenizerFast:
    """BERT uncased's kind: lower case, accents stripped ('Crème' is read 'creme'), '##' pieces. Its vocabulary is
    listed, not trained (WordPiece's trainer picks other pieces from run to run): the characters, alone and as
    '##' pieces, and the words of even length whole, so the others are cut into pieces."""
    normalizer = normalizers.BertNormalizer(lowercase=True)
    words = sorted({w for t in TEXTS for w, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(
        normalizer.normalize_str(t))})
    characters = sorted(set("".join(words)))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *characters, *("##" + c for c in characters),
             *(w for w in words if len(w) % 2 == 0 and len(w) > 1)]
    backend = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    backend.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]")


def classifier(family: str, tokenizer):
    import transformers

    torch.manual_seed(0)
    size = dict(vocab_size=len(tokenizer), num_labels=2, pad_token_id=tokenizer.pad_token_id)
    if family == "gpt2":
        return transformers.GPT2ForSequenceClassification(transformers.GPT2Config(
            n_embd=32, n_layer=1, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0, **size))
    return transformers.LlamaForSequenceClassification(transformers.LlamaConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
        max_position_embeddings=64, **size))


FAMILIES = {"byte-level BPE": ("gpt2", byte_level_bpe), "Llama 2 BPE": ("llama", llama2_bpe),
            "Unigram with EOS": ("llama", unigram_with_eos), "RoBERTa BPE": ("llama", roberta_bpe),
            "uncased WordPiece": ("llama", uncased_wordpiece)}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family_run(request, tmp_path_factory):
    family, make = FAMILIES[request.param]
    folder = tmp_path_factory.mktemp("model")
    tokenizer = make()
    classifier(family, tokenizer).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    run = run_model(tmp_path_factory.mktemp("runs") / "run", folder, TEXTS, LABELS, n_components=2, n_iters_g_only=5,
                    n_iters_joint=5, n_top=8, progress=False)
    return RunExplorer.open(run.path)


def _whole(text: str, start: int, stop: int) -> bool:
    """text[start:stop] is one or more whole words: no letter of a word on either side of it."""
    return not (start > 0 and text[start - 1].isalnum() and text[start].isalnum()) and \
        not (stop < len(text) and text[stop].isalnum() and text[stop - 1].isalnum())


def test_cards_show_the_text_as_written_and_name_and_mark_whole_words(family_run):
    seen = 0
    for component in range(family_run.n_components):
        for e in family_run.top_examples(component, page_size=len(TEXTS)).examples:
            card = report.example_html(e)
            body = re.search(r'<div class="tokens"[^>]*>(.*)</div></div>$', card, re.S).group(1)
            assert html.unescape(re.sub(r"<[^>]+>", "", body)) == e.text
            assert not any(mark in card for mark in MARKS), card  # also in a lone space token's tooltip
            word, where = e.strongest_token, e.strongest_positions
            start, stop = e.spans[where[0]][0], e.spans[where[-1]][1]
            assert word and word == e.text[start:stop].strip() and _whole(e.text, start, stop), (word, e.text)
            marked = html.unescape(re.sub(r"<(?!/?mark>)[^>]+>", "", body))  # the text, its marks kept
            for mark in re.finditer(r"<mark>(.*?)</mark>", marked):
                start = mark.start() - 13 * (marked[:mark.start()].count("<mark>"))  # 13: "<mark></mark>"
                stop = start + len(mark.group(1))
                assert mark.group(1).strip() and _whole(e.text, start, stop), (mark.group(1), e.text)
            seen += 1
    assert seen


def test_labels_lookups_and_deletions_read_words(family_run):
    for label in family_run.label_components():
        word = re.search(r"'(.*)' [0-9.]+", label).group(1)  # as the tokenizer spells it: T5's NFKC reads '…' '...'
        assert word.strip() == word and word and " " not in word and not any(m in word for m in MARKS), label
    assert len(family_run.lookup("A lovely café, great coffee 😀").loadings) > 0
    effects = family_run.deletion_effects(0, "Crème brûlée was perfect 👌")
    assert sorted(effects["word"]) == sorted("Crème brûlée was perfect 👌".split())


def test_a_lone_space_token_is_named_as_a_space_and_never_marked_alone():
    from workbench.report.html import highlighted_text_html

    text = "in  Zürich"  # byte-level BPE: 'in', a lone 'Ġ' (the first space), 'ĠZ', 'ü', 'rich'
    tokens, spans = ["in", "Ġ", "ĠZ", "Ã¼", "rich"], [(0, 2), (2, 3), (3, 5), (5, 6), (6, 10)]
    card = highlighted_text_html(text, tokens, [0.1, 0.9, 0.0, 0.0, 0.0], spans, words=[0, 1, 2, 2, 2])
    assert "Ġ" not in card and 'title="␣: +90.0%' in card
    assert "<mark>" not in card  # the deep space alone: a mark around nothing a reader sees
    assert html.unescape(re.sub(r"<[^>]+>", "", card)) == text


def test_a_slow_tokenizer_degrades_to_its_tokens_says_so_once_and_never_names_a_space(tmp_path):
    """ByT5's tokenizer is Python (no offsets, no word_ids): cards show its tokens, a page says why once, and a space
    token is neither the strongest word nor a label."""
    from transformers import ByT5Tokenizer

    tokenizer = ByT5Tokenizer()
    assert not tokenizer.is_fast
    classifier("llama", tokenizer).eval().save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    run = run_model(tmp_path / "run", tmp_path / "model", TEXTS[:12], LABELS[:12], n_components=2, n_iters_g_only=5,
                    n_iters_joint=5, n_top=6, progress=False)
    explorer = RunExplorer.open(run.path)
    for component in range(explorer.n_components):
        page = explorer.top_examples(component, page_size=6)
        assert page.note.count("slow") == 1 and "ByT5Tokenizer" in page.note
        assert all(e.strongest_token and e.strongest_token.strip() == e.strongest_token for e in page.examples)
        report.examples_page_html(page)
    for label in explorer.label_components():
        assert "' '" not in label and "''" not in label, label
    assert len(explorer.lookup("A lovely café").loadings) > 0
    assert len(explorer.deletion_effects(0, 3)) == len(TEXTS[3].split())


def test_a_tokenizer_given_without_a_padding_token_pads_as_the_run_did(family_run, tmp_path):
    """GPT-2's tokenizer has none: run_model pads with its end-of-text token, and so does the explorer given it."""
    from transformers import AutoModelForSequenceClassification

    if family_run.model_and_tokenizer()[1].eos_token != "<|endoftext|>":
        pytest.skip("GPT-2's kind only")
    given = byte_level_bpe()
    assert given.pad_token is None
    model = AutoModelForSequenceClassification.from_pretrained(family_run.run.path / "model")
    model.config.pad_token_id = None
    explorer = RunExplorer.open(family_run.run.path, model=model, tokenizer=given)
    assert explorer.top_examples(0, page_size=4).examples[0].strongest_token
    bare = PreTrainedTokenizerFast(tokenizer_object=byte_level_bpe().backend_tokenizer)  # no end-of-text token either
    with pytest.raises(ValueError, match="no padding token and no end-of-text token"):
        RunExplorer.open(family_run.run.path, model=model, tokenizer=bare)


def test_a_text_that_loads_on_nothing_has_no_deletion_drops(monkeypatch):
    """A tiny GPT-2's example fitted a coefficient of 1.5e-17 on a component, and its words' drops read -3e15."""
    import numpy as np

    from workbench.analysis import lookup
    from workbench.report.html import deletions_html

    W = np.array([[1.5e-17], [0.05], [0.09], [0.0]], dtype=np.float32)
    monkeypatch.setattr(lookup, "coefficients_of_texts", lambda *args, **kwargs: (W, 0.0))
    monkeypatch.setattr(lookup, "read_spans", lambda *args: {})  # no tokenizer here: every word read
    effects = lookup.deletion_effects(None, None, None, "was perfect here", 0)
    assert effects["drop"].isna().all() and list(effects["coefficient"]) == pytest.approx([0.05, 0.09, 0.0])
    assert "nan" not in deletions_html([(3, "perfect", effects)])
    W[0, 0] = 0.1  # a text that loads: its drops as before
    assert lookup.deletion_effects(None, None, None, "was perfect here", 0)["drop"].tolist() == pytest.approx([1, 0.5, 0.1])


def test_a_page_s_table_of_words_holds_whole_words_and_no_space(family_run):
    for component in range(family_run.n_components):
        table = family_run.top_examples(component, page_size=8).top_tokens()
        assert len(table) and all(w and w.strip() == w and w != "␣" for w in table.index), list(table.index)
        texts = [e for t in TEXTS for e in t.split()]
        assert all(any(w in t for t in texts) for w in table.index)
        assert any(len(w) > 3 for w in table.index)  # words, not only their pieces


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_pair_s_deletions_delete_the_words_a_card_shows(name):
    """A pair's deletions grouped tokens by word id alone: under Llama 2's kind each text was one word, deleted whole."""
    from workbench.analysis.lookup import _pair_words

    pair = ("Crème brûlée was perfect", "it was  not 👌")
    words = [(side, word) for side, word, _, _ in _pair_words(FAMILIES[name][1](), pair)]
    assert words == [(side, word) for side in (0, 1) for word in pair[side].split()]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_embedded_task_s_hit_rate_reads_the_words_of_the_text(name):
    """highlight_hit_rate judged a hit by the tokenizer's word ids: Llama 2's give a whole text word 0, so a card whose
    strongest word was the deciding "not" missed (a Llama fine-tuned on the task: hit rate 0.025, its cards' strongest
    words 'not', 'poor', 'blick'); and its chance counted tokens, so a deciding word cut into pieces drew the chance up
    (RoBERTa's BPE: 0.38 where the same texts' words give 0.21)."""
    from types import SimpleNamespace

    import numpy as np
    import pandas as pd

    from workbench.app.results import HighlightedExample
    from workbench.models.embedded.task import strongest_word_hits
    from workbench.models.text import encode_texts

    tokenizer = FAMILIES[name][1]()
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token  # as the workbench loads GPT-2's
    text = "the plot was not good ."
    examples = pd.DataFrame({"text": [text], "deciding_words": [(3, 4)]})
    encoded = encode_texts(None, tokenizer, [text], 64, spans=True)
    spans, special = encoded.text_spans(0), encoded.special[0].tolist()
    start = text.index("not")
    on_not = [p for p, (a, b) in enumerate(spans) if not special[p] and a < start + 3 and b > start and text[a:b].strip()]
    visible = np.full(len(spans), 0.01)
    visible[special] = 0.0
    visible[on_not] = 1.0
    card = HighlightedExample(example=0, rank=0, text=text, label=1, prediction=1, coefficient=1.0,
                              tokens=tokenizer.convert_ids_to_tokens(encoded.inputs["input_ids"][0].tolist()),
                              scores=visible, special=special, spans=spans, words=encoded.word_ids[0], visible=visible)
    assert card.strongest_token == "not"
    row, = strongest_word_hits([(0, SimpleNamespace(examples=[card]))], examples, tokenizer, 64)
    assert row["hit"] and row["chance"] == pytest.approx(2 / 6)
