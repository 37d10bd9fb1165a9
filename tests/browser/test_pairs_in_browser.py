"""A sentence pair's card and lookup as Chromium lays them out: each text reads in its own direction on its
side of the ‖ seam. Joined in one paragraph, an Arabic premise turned the whole card right-to-left and an
English hypothesis's closing '?' was drawn before its first word, where it belongs after its last."""

from pathlib import Path

import pandas as pd
import pytest

from workbench import report
from workbench.app.results import Lookup
from workbench.core.words import PAIR_SEPARATOR

from .lab import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"no {CHROMIUM}: `make test` installs it (apt-get install chromium)"),
]

FIRST, SECOND = "القطة جلست؟", "a cat sat on the mat?"
TEXT = FIRST + PAIR_SEPARATOR + SECOND


def _card() -> str:
    """FIRST ‖ SECOND shaded as a fast tokenizer's words and punctuation split them, each on its own characters."""
    pieces = [(0, 5), (6, 10), (10, 11)]
    seam = len(FIRST) + len(PAIR_SEPARATOR)
    pieces += [(seam + a, seam + b) for a, b in [(0, 1), (2, 5), (6, 9), (10, 12), (13, 16), (17, 20), (20, 21)]]
    tokens = [TEXT[a:b] for a, b in pieces]
    scores = [0.1 * (i % 3 + 1) for i in range(len(tokens))]
    return report.highlighted_text_html(TEXT, tokens, scores, spans=pieces)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    lookup = Lookup(TEXT, pd.DataFrame({"coefficient": [0.5], "scaled": [1.0], "share": [1.0]}), is_pair=True)
    path = tmp_path_factory.mktemp("pairs") / "pairs.html"
    path.write_text(f"<!doctype html><meta charset='utf-8'><body>{report.fragment(_card())}"
                    f"{report.fragment(report.lookup_html(lookup))}</body>", encoding="utf-8")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = chromium.new_page(viewport={"width": 1280, "height": 600})
        page.goto(path.as_uri())
        yield page
        chromium.close()


def _x_of(page, view: int, text: str, occurrence: int) -> float:
    """The left edge of the ``occurrence``-th ``text`` in the ``view``-th tokens box, as drawn."""
    return page.evaluate("""([view, text, occurrence]) => {
        const box = document.querySelectorAll('.tokens')[view];
        const walker = document.createTreeWalker(box, NodeFilter.SHOW_TEXT);
        let seen = 0;
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            for (let at = node.data.indexOf(text); at >= 0; at = node.data.indexOf(text, at + 1)) {
                if (seen++ === occurrence) {
                    const range = document.createRange();
                    range.setStart(node, at);
                    range.setEnd(node, at + text.length);
                    return range.getBoundingClientRect().left;
                }
            }
        }
        return null;
    }""", [view, text, occurrence])


@pytest.mark.parametrize("view", [0, 1], ids=["card", "lookup"])
def test_each_text_of_a_pair_reads_in_its_own_direction(page, view):
    first_word, question, seam = (_x_of(page, view, "a", 0), _x_of(page, view, "?", 0), _x_of(page, view, "‖", 0))
    assert None not in (first_word, question, seam)
    assert question > first_word, "the English hypothesis's closing '?' was drawn before its first word"
    # the Arabic premise reads right to left, its first word at its right end, and the seam between the two texts
    arabic_first, arabic_last = _x_of(page, view, "القطة", 0), _x_of(page, view, "جلست", 0)
    assert arabic_first > arabic_last
    assert (seam > max(arabic_first, arabic_last)) != (seam > first_word), "‖ is not between the two texts"
