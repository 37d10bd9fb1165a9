"""Sentence pairs (an NLI premise and hypothesis): run_model encodes them as the tokenizer encodes pairs, the
run keeps both texts, and the cards shade each token on its own text's characters."""

import numpy as np
import pandas as pd
import pytest
import torch

from workbench import RunExplorer, run_model
from workbench.models.text import PAIR_SEPARATOR, TEXT_PAIR_COLUMN, encode_texts

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "the", "cat", "dog", "sat", "is", "on", "mat", "an",
         "animal", "not", "sleeping", "bl", "##ick", "##s", "run", "fast", "slow", "."]

PAIRS = [("the cat sat on the mat", "a cat is sleeping"), ("the dog is fast", "an animal is not slow"),
         ("a cat blick", "blick dog"), ("the dog sat", "the cat is not on the mat"), ("cats run", "dogs run fast"),
         ("the mat is blick", "a blick mat"), ("a dog is an animal", "the dog is not an animal"),
         ("the cat is slow", "the cat is fast"), ("dogs sat on mats", "a dog sat"), ("an animal sat", "a cat sat"),
         ("the blick is fast", "it is not slow"), ("a cat", "a cat")]


@pytest.fixture(scope="module")
def pair_model(tmp_path_factory):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("pair_model")
    (folder / "vocab.txt").write_text("\n".join(VOCAB))
    tokenizer = BertTokenizerFast(str(folder / "vocab.txt"), model_max_length=64)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=3)
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pair_run(pair_model, tmp_path_factory):
    return run_model(tmp_path_factory.mktemp("runs") / "pairs", pair_model, PAIRS, [i % 3 for i in range(12)],
                     n_components=2, n_iters_g_only=5, n_iters_joint=5, n_top=4, progress=False)


def test_a_run_of_pairs_keeps_both_texts_and_its_cards_shade_each_on_its_own_characters(pair_run):
    import html
    import re

    from workbench import report

    examples = pair_run.examples
    assert list(examples.columns[:3]) == ["text", TEXT_PAIR_COLUMN, "label"]
    assert list(zip(examples["text"], examples[TEXT_PAIR_COLUMN])) == PAIRS
    pair_run.check_consistent()
    explorer = RunExplorer.open(pair_run.path)
    assert explorer.texts == PAIRS
    seen = set()
    for component in range(explorer.n_components):
        page = explorer.top_examples(component, page_size=12)
        for e in page.examples:
            seen.add(e.example)
            first, second = PAIRS[e.example]
            assert e.text == first + PAIR_SEPARATOR + second
            boundary = len(first)
            # every piece on its own characters: the second text's too, where its offsets started again at 0
            shown = [e.text[a:b] for (a, b), special in zip(e.spans, e.special) if not special]
            assert "".join(shown) == (first + second).replace(" ", "")
            assert all(b <= boundary or a >= boundary + len(PAIR_SEPARATOR) for a, b in e.spans)
            # the first text's last word and the second's first are two words, also where both are "blick"
            pieces = [p for p, special in enumerate(e.special) if not special]
            last_of_first = max(p for p in pieces if e.spans[p][1] <= boundary)
            first_of_second = min(p for p in pieces if e.spans[p][0] > boundary)
            assert e.words[last_of_first] != e.words[first_of_second]
            assert e.strongest_token in (first + " " + second).split()
            card = report.example_html(e)
            shaded = [html.unescape(t) for t in re.findall(r'<span class="tok[^"]*"[^>]*>([^<]*)</span>', card)]
            assert "".join(shaded).replace(" ", "") == (first + second).replace(" ", "")
            assert html.escape(PAIR_SEPARATOR.strip()) in card
        assert PAIR_SEPARATOR in repr(page)
    assert 2 in seen  # "a cat blick" / "blick dog": the word at the seam on both sides


def test_pairs_are_encoded_as_the_tokenizer_encodes_pairs_and_their_cut_is_named(pair_model):
    from transformers import AutoTokenizer

    from workbench.models.embedded import load_default_model
    from workbench.models.text import TruncationWarning

    model, tokenizer = load_default_model(pair_model)
    encoded = encode_texts(model, tokenizer, PAIRS[:2], 64)
    reference = AutoTokenizer.from_pretrained(pair_model)([p[0] for p in PAIRS[:2]], [p[1] for p in PAIRS[:2]],
                                                         padding="longest", return_tensors="pt")
    assert torch.equal(encoded.inputs["input_ids"], reference["input_ids"])
    assert torch.equal(encoded.inputs["token_type_ids"], reference["token_type_ids"])  # BERT reads them
    with pytest.warns(TruncationWarning, match=r"1 of 2 pairs of texts are longer together than max_length=8 .*\(first: \[0\]\)"):
        encode_texts(model, tokenizer, [PAIRS[2], PAIRS[11]], 8)


@pytest.mark.parametrize("texts, error, match", [
    ([("a cat", "a dog"), "a cat"], TypeError, "mixes pairs of texts and single texts .*example 0 is a pair, example 1"),
    ([("a", "b", "c")], ValueError, r"texts\[0\] has 3 texts; a pair is \(first, second\)"),
    ([("a cat", 3)], TypeError, r"texts\[0\] must be a pair of strings, got \(str, int\)"),
    # told to pass (str(first), str(second)), which reads 'nan' as the hypothesis
    (list(zip(["a cat", "a dog"], pd.Series(["a pet", None]))), ValueError,
     r"the second text of texts\[1\] is missing \(nan: an empty cell .* Drop them with their labels, e.g. frame = "
     r"frame.dropna"),
    ([(None, "a dog"), ("a cat", "a pet")], ValueError, r"the first text of texts\[0\] is missing \(None"),
    (["a cat", float("nan"), None], ValueError, r"texts\[1\] is missing \(nan.*2 examples lack a text \(first: \[1, 2\]\)"),
])
def test_bad_pairs_are_refused_before_anything_is_written(pair_model, tmp_path, texts, error, match):
    with pytest.raises(error, match=match):
        run_model(tmp_path / "run", pair_model, texts, n_components=1, progress=False)
    assert not (tmp_path / "run").exists()


def test_a_prompt_is_refused_for_pairs(pair_model, tmp_path):
    with pytest.raises(ValueError, match="template= reads one text per example"):
        run_model(tmp_path / "run", pair_model, PAIRS[:2], template="{text}", label_words=["a", "b"],
                  n_components=1, progress=False)
    assert not (tmp_path / "run").exists()


def test_single_texts_are_stored_as_before(pair_model, tmp_path):
    run = run_model(tmp_path / "run", pair_model, [p[0] for p in PAIRS[:4]], n_components=1, n_iters_g_only=2,
                    n_iters_joint=2, progress=False)
    assert list(run.examples.columns) == ["text", "label", "prediction"]
    assert RunExplorer.open(run.path).texts == [p[0] for p in PAIRS[:4]]
    assert pd.read_parquet(run.path / "examples.parquet").shape == (4, 3)


def test_an_example_of_pairs_is_looked_up_by_its_pair_and_a_single_text_is_refused(pair_run):
    explorer = RunExplorer.open(pair_run.path)
    assert explorer.lookup(2).text == PAIRS[2][0] + PAIR_SEPARATOR + PAIRS[2][1]
    assert explorer.lookup(PAIRS[5]).example == 5 and explorer.lookup(list(PAIRS[5])).example == 5
    for what in (explorer.lookup, lambda text: explorer.deletion_effects(0, text)):
        with pytest.raises(ValueError, match=r"examples are pairs of texts, .* one text would compute a PEF the fit "
                                             r"never saw .* type the new example with \|\| \(or ‖\) between its texts"):
            what("a cat sat")
    with pytest.raises(ValueError, match="pair of texts not both blank"):
        explorer.lookup(("", " "))
    # typed with ‖ twice: refused as 'one text', where the text held three
    with pytest.raises(ValueError, match=r"holds ‖ 2 times, where a pair typed as its card shows it has one between its "
                                         r"two texts; pass the pair as a \(first, second\) tuple"):
        explorer.lookup("a cat ‖ a dog ‖ sat")
    with pytest.raises(TypeError, match=r"example number or a \(first, second\) pair of texts"):
        explorer.lookup(("a cat", 3))
    # typed with || (no keyboard has ‖): the same pair, found among the run's examples, or a new one
    assert explorer.lookup(f"{PAIRS[5][0]} || {PAIRS[5][1]}").example == 5
    typed, given = explorer.lookup("a cat sat||an animal sat"), explorer.lookup(("a cat sat", "an animal sat"))
    assert typed.text == given.text and typed.loadings.equals(given.loadings)
    with pytest.raises(ValueError, match=r"holds \|\| 2 times"):
        explorer.lookup("a || b || c")
    assert all(PAIR_SEPARATOR in text for text in explorer._search_text if text)  # the search reads both texts


@pytest.mark.parametrize("example, match", [
    (("a cat", "sat", "on a mat"), r"got \('a cat', 'sat', 'on a mat'\): 3 parts, where a pair has two texts"),
    ((("a cat", "sat"), "a mat"), r"its first text is a tuple, where each of the two is a string"),
    ((b"a cat", b"a dog"), r"its first text is bytes; decode it first, e.g. text.decode\('utf-8'\)"),
    (b"a cat \xe2\x80\x96 a dog", r"bytes, not a text; decode them first"),
    (("a cat", float("nan")), r"its second text is missing \(nan\); give both texts of the pair"),
])
def test_a_new_pair_that_is_no_pair_of_texts_is_refused_saying_why(pair_run, example, match):
    """Each was refused as 'an example number or a (first, second) pair of texts', not saying what was wrong with it."""
    explorer = RunExplorer.open(pair_run.path)
    for what in (explorer.lookup, lambda text: explorer.deletion_effects(0, text)):
        with pytest.raises(TypeError, match=match):
            what(example)


def test_a_new_pair_gets_the_pef_the_run_stored_for_it_and_transform_s_coefficients(pair_run):
    """A pair read as new is encoded as the run encoded its pairs (token type ids, the same max_length): it gets the
    PEF the run stored for the same pair, and the coefficients the decomposition's transform gives that PEF."""
    from workbench.analysis.lookup import coefficients_of_texts, pefs_of_texts

    explorer = RunExplorer.open(pair_run.path)
    model, tokenizer = explorer.model_and_tokenizer()
    stored = pair_run.pefs()
    for i in (0, 2, 6):
        new = pefs_of_texts(model, tokenizer, explorer.decomposition, [PAIRS[i]], **explorer._text_pefs)
        rows = stored[i : i + 1].matrix.toarray()
        np.testing.assert_allclose(new.matrix.toarray(), rows, rtol=1e-4, atol=1e-6 * np.abs(rows).max())
        expected = explorer.decomposition.transform(stored[i : i + 1])[0]
        W, _ = coefficients_of_texts(model, tokenizer, explorer.decomposition, [PAIRS[i]], **explorer._text_pefs)
        np.testing.assert_allclose(W[0], expected, rtol=1e-5, atol=1e-7 * expected.max())
        first, second = PAIRS[i]
        for typed in [(first, second + " "), [first, second + " "]]:
            lookup = explorer.lookup(typed, n=None)  # not the run's pair, though the tokenizer reads it so
            assert lookup.example is None and lookup.seconds > 0
            assert lookup.text == first + PAIR_SEPARATOR + second + " "
            np.testing.assert_allclose(lookup.loadings.sort_index()["coefficient"], expected[expected > 0], rtol=1e-5)
        assert explorer.lookup(f" {first} ‖ {second} ").example == i  # typed in a box, as a card shows it
    typed = explorer.lookup("a dog sat‖a cat")  # a new pair typed: its two texts, not one text with a ‖ in it
    assert typed.example is None and typed.text == "a dog sat" + PAIR_SEPARATOR + "a cat"
    assert typed.caption().startswith("Components that a new pair of texts loads on")  # it said "a new text"
    from widgets.lookup import LookupPanel

    panel = LookupPanel(explorer)
    assert panel.query.placeholder == "an example's number, or a pair: first || second"
    panel.query.value = "a cat sat"  # one text typed where the run's examples are pairs: refused in words
    assert "type the new example with || (or ‖) between its texts" in panel.body.value
    assert "Traceback" not in panel.body.value and panel.current is None


def test_deleting_each_word_of_a_pair_is_the_lookup_of_the_pair_without_it(pair_run):
    """The words of either text, as the tokenizer's word ids group them ("blicks" one word of three pieces, "sat."
    two), each deleted in turn: its row is the lookup of the pair without it, and says which text it came from."""
    explorer = RunExplorer.open(pair_run.path)
    new = ("the cat sat.", "blicks run")
    for component in range(explorer.n_components):
        effects = explorer.deletion_effects(component, new)
        assert list(effects.columns) == ["word", "text", "start", "stop", "coefficient", "drop"]
        assert effects["drop"].is_monotonic_decreasing
        assert sorted(zip(effects["text"], effects["start"], effects["word"])) == [
            ("first", 0, "the"), ("first", 4, "cat"), ("first", 8, "sat"), ("first", 11, "."),
            ("second", 0, "blicks"), ("second", 7, "run")]
        own = explorer.lookup(new, n=None).loadings["coefficient"].get(component, 0.0)
        assert effects.attrs["coefficient"] == pytest.approx(own, rel=1e-4, abs=1e-9)
        for row in effects.itertuples():
            side = ("first", "second").index(row.text)
            text = new[side]
            assert text[row.start:row.stop] == row.word
            edited = list(new)
            edited[side] = (text[:row.start].rstrip() + " " + text[row.stop:].lstrip()).strip()
            lookup = explorer.lookup(tuple(edited), n=None)
            assert lookup.example is None
            assert row.coefficient == pytest.approx(lookup.loadings["coefficient"].get(component, 0.0), rel=1e-4,
                                                    abs=1e-9 * max(own, 1))
    # an example of the run by its number, as by its pair; a text's only word deleted leaves the other text alone
    effects = explorer.deletion_effects(0, 11)
    pd.testing.assert_frame_equal(effects, explorer.deletion_effects(0, PAIRS[11]))
    alone = effects[effects["word"] == "cat"]
    assert sorted(alone["text"]) == ["first", "second"] and len(effects) == 4
    by_lookup = explorer.lookup(("a", "a cat"), n=None).loadings["coefficient"].get(0, 0.0)
    assert alone[alone["text"] == "first"]["coefficient"].iloc[0] == pytest.approx(by_lookup, rel=1e-4, abs=1e-9)
    with pytest.raises(ValueError, match="is one word"):
        explorer.deletion_effects(0, ("cat", ""))


class _ProjectionProbe:
    """A decomposition whose 'coefficient' is a fixed random projection of each PEF: the tiny run's coefficients,
    and the PEFs' norms, move by 1e-5 of themselves when a word goes, too little to tell one deleted word's pair
    from another's; the projection reads the entries, of the deleted word's embedding row among them."""

    def __init__(self, decomposition):
        self.layout_ = decomposition.layout_

    def transform(self, pefs):
        rows = [pefs[i : i + 1].matrix.toarray().ravel() for i in range(len(pefs.frobenius_norms))]
        direction = np.random.default_rng(0).standard_normal(rows[0].size)
        return np.array([[abs(row @ direction)] for row in rows])  # non-negative, as coefficients are


def test_each_deletion_row_is_the_pef_of_its_edited_pair_read_alone(pair_run):
    from workbench.analysis.lookup import deletion_effects, pefs_of_texts

    explorer = RunExplorer.open(pair_run.path)
    model, tokenizer = explorer.model_and_tokenizer()
    probe, new = _ProjectionProbe(explorer.decomposition), ("the cat sat.", "blicks run")

    def alone(pair):  # its PEF read alone, as a lookup reads it
        return probe.transform(pefs_of_texts(model, tokenizer, probe, [pair], **explorer._text_pefs))[0, 0]

    effects = deletion_effects(model, tokenizer, probe, new, 0, **explorer._text_pefs)
    edited = []
    for row in effects.itertuples():
        side = ("first", "second").index(row.text)
        pair = list(new)
        pair[side] = (new[side][:row.start].rstrip() + " " + new[side][row.stop:].lstrip()).strip()
        edited.append(alone(tuple(pair)))
    # each row is its own edited pair's, told apart from every other word's (rows 1e-4 apart, read alone 1e-6)
    distance = np.abs(effects["coefficient"].to_numpy()[:, None] - np.array(edited)[None, :])
    assert (distance.argmin(axis=1) == np.arange(len(effects))).all()
    np.testing.assert_allclose(effects["coefficient"], edited, rtol=1e-6)
    assert effects.attrs["coefficient"] == pytest.approx(alone(new), rel=1e-6)
    np.testing.assert_allclose(effects["drop"], 1 - effects["coefficient"] / effects.attrs["coefficient"])


def test_a_new_pair_is_cut_as_the_run_cut_its_pairs(pair_model, tmp_path):
    with pytest.warns(UserWarning, match="pairs of texts are longer together than max_length=8"):
        run = run_model(tmp_path / "run", pair_model, PAIRS[:6], n_components=1, n_iters_g_only=2, n_iters_joint=2,
                        max_length=8, progress=False)
    explorer = RunExplorer.open(run.path)
    expected = explorer.decomposition.transform(run.pefs()[0:1])[0]
    first, second = PAIRS[0]  # 6 and 4 words: the first text loses its end
    with pytest.warns(UserWarning, match="1 of 1 pairs of texts are longer together than max_length=8"):
        lookup = explorer.lookup((first, second + " "), n=None)
    np.testing.assert_allclose(lookup.loadings.sort_index()["coefficient"], expected[expected > 0], rtol=1e-5)
    with pytest.warns(UserWarning, match="pairs of texts are longer together than max_length=8"):
        effects = explorer.deletion_effects(0, 0)
    unread = effects[(effects["text"] == "first") & (effects["start"] >= len("the cat sat "))]
    assert len(unread) == 3 and (unread["drop"].abs() < 1e-6).all()  # "on the mat": past the cut, read by none


def test_a_pair_is_refused_by_a_run_of_single_texts_with_the_fix(pair_model, tmp_path):
    run = run_model(tmp_path / "run", pair_model, [" ".join(p) for p in PAIRS[:4]], n_components=1, n_iters_g_only=2,
                    n_iters_joint=2, progress=False)
    explorer = RunExplorer.open(run.path)
    for what in (explorer.lookup, lambda pair: explorer.deletion_effects(0, pair)):
        for pair in [("a cat", "a dog"), ["a cat", "a dog"]]:
            with pytest.raises(ValueError, match=r"examples are single texts, .* pass one text, e.g. the pair joined"):
                what(pair)
    assert explorer.lookup("a cat a dog").example is None
    assert explorer.lookup("a cat a dog").caption().startswith("Components that a new text loads on")
    from widgets.lookup import LookupPanel

    assert LookupPanel(explorer).query.placeholder == "an example's number, or a sentence"


def test_a_dataframe_of_pairs_is_pointed_to_its_tuples(pair_model, tmp_path):
    frame = pd.DataFrame({"premise": ["a cat"], "hypothesis": ["a dog"]})
    with pytest.raises(TypeError, match=r"list\(zip\(frame\['premise'\], frame\['hypothesis'\]\)\)"):
        run_model(tmp_path / "run", pair_model, frame, n_components=1, progress=False)
    assert not (tmp_path / "run").exists()


def test_labels_traces_perturbations_and_dashboards_read_the_pairs(pair_run):
    explorer = RunExplorer.open(pair_run.path)
    assert len(explorer.label_components()) == explorer.n_components
    trace = explorer.trace(0, n_top=2, n_baseline=2)
    for row, spelled in zip(trace.examples, trace.spelled):
        words = [w for w in spelled if w not in ("[CLS]", "[SEP]")]
        assert "".join(words) == "".join(PAIRS[row]).replace(" ", "")  # the second text's pieces spelled as it is
    assert explorer.perturb(0, n_baseline=4).to_frame().shape[0] > 0
    assert explorer.dashboard(0, sweep=None).logit_change is not None


def test_a_card_marks_where_each_text_of_a_cut_pair_was_read_no_further(pair_model):
    from workbench import report
    from workbench.models.embedded import load_default_model

    model, tokenizer = load_default_model(pair_model)
    encoded = encode_texts(model, tokenizer, [("the cat sat on the mat the cat sat", "a cat is sleeping")], 12,
                           warn=False, spans=True)
    text, spans, special = encoded.strings[0], encoded.spans[0], encoded.special[0].tolist()
    tokens = tokenizer.convert_ids_to_tokens(encoded.inputs["input_ids"][0].tolist())
    card = report.highlighted_text_html(text, tokens, [0.1] * len(tokens), spans, special)
    first, second = card.split(PAIR_SEPARATOR.strip())
    assert "read no further" in first and "the cat sat" in first.split("read no further")[1]  # the first text's cut end
    assert "read no further" not in second and "sleeping" in second  # the second, whole, shaded after it
    # the text view too: the first text's unread end is named before the second text, read whole
    view = report.read_text(text, spans, special)
    assert view.split(PAIR_SEPARATOR)[0].endswith("more characters]") and view.endswith("a cat is sleeping")


def test_the_viewer_s_deletion_check_reads_each_shaded_word_at_its_place_in_its_text(pair_run):
    """The check matched the shaded word by its text: the largest drop of any word holding it, in either text of a pair
    ('the' of both texts, 'a' of 'animal')."""
    import re

    from widgets import ExampleViewer
    from workbench import report

    explorer = RunExplorer.open(pair_run.path)
    viewer = ExampleViewer(explorer, page_size=12)
    viewer.show(0)
    checks = viewer.check_deletions()
    cells = re.findall(r"<tr><td>\d+</td><td>(.*?)</td>", viewer.body.value)
    assert len(cells) == len(checks)
    for (example, place, effects), cell in zip(checks, cells):
        word, side, start, stop = place
        assert PAIRS[example][("first", "second").index(side)][start:stop] == word
        row = effects[(effects["text"] == side) & (effects["start"] == start)].iloc[0]
        assert row["word"] == word and cell == f"<bdi>{word}</bdi> {report.percent(row['drop'])}"
