"""A word longer than the panel is wide, in a box laid out as an ipywidgets HTML widget lays out its content (a flex
item, as wide as its content's narrowest layout): the word set that width, and a JupyterLab window of 900 px drew every
card, the deletion table and the lookup past the panel's edge, where they were cut (a right-to-left first text of a
pair, drawn from the card's right edge, all of it)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbench import report
from workbench.app.results import HighlightedExample, Lookup
from workbench.core.words import PAIR_SEPARATOR

from .lab import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"no {CHROMIUM}: `make test` installs it (apt-get install chromium)"),
]

LONG = "supercalifragilistic" * 12
FIRST, SECOND = f"{LONG} cat", "a dog"
TEXT = FIRST + PAIR_SEPARATOR + SECOND
PANEL_WIDTH = 480


def _views() -> str:
    seam = len(FIRST) + len(PAIR_SEPARATOR)
    pieces = [(0, len(LONG)), (len(LONG) + 1, len(FIRST)), (seam, seam + 1), (seam + 2, seam + 5)]
    scores = np.array([0.3, 0.1, 0.2, 0.1])
    card = report.example_html(HighlightedExample(  # the long word the strongest: named in the card's line too
        example=0, rank=0, text=TEXT, label=0, prediction=1, coefficient=0.5, tokens=[TEXT[a:b] for a, b in pieces],
        scores=scores, head_share=0.2, special=[False] * 4, spans=pieces, visible=scores / scores.sum(),
        visible_share=0.7, special_share=0.1, words=[0, 1, 2, 3]))
    effects = pd.DataFrame({"word": [LONG, "cat"], "text": ["first", "first"], "start": [0, len(LONG) + 1],
                            "stop": [len(LONG), len(FIRST)], "coefficient": [0.1, 0.5], "drop": [0.8, 0.1]})
    deletions = report.deletions_html([(0, (LONG, "first", 0, len(LONG)), effects)])
    lookup = report.lookup_html(Lookup(TEXT, pd.DataFrame({"coefficient": [0.5], "scaled": [1.0], "share": [1.0]}),
                                       is_pair=True))
    return report.fragment(card + deletions) + report.fragment(lookup)


def test_a_long_word_is_broken_inside_the_panel(tmp_path):
    from playwright.sync_api import sync_playwright

    path = tmp_path / "long.html"
    path.write_text(f"<!doctype html><meta charset='utf-8'><body><div id='panel' style='display: flex; width: "
                    f"{PANEL_WIDTH}px'><div style='flex: 1 1 auto'>{_views()}</div></div></body>", encoding="utf-8")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = chromium.new_page(viewport={"width": 1280, "height": 900})
            page.goto(path.as_uri())
            past = page.evaluate("""() => { const edge = document.querySelector('#panel').getBoundingClientRect().right;
                return [...document.querySelectorAll('.example, .deletions, .npeff table, .npeff .tokens')]
                  .map(e => [e.className || e.tagName, Math.round(e.getBoundingClientRect().right - edge)])
                  .filter(([, by]) => by > 1); }""")
        finally:
            chromium.close()
    assert past == [], f"drawn past the panel's right edge by (px): {past}"
