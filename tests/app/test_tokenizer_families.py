"""Texts read under the tokenizers of other families than MiniLM's WordPiece."""

import html
import re


def test_a_lone_space_token_is_named_as_a_space_and_never_marked_alone():
    from workbench.report.html import highlighted_text_html

    text = "in  Zürich"  # byte-level BPE: 'in', a lone 'Ġ' (the first space), 'ĠZ', 'ü', 'rich'
    tokens, spans = ["in", "Ġ", "ĠZ", "Ã¼", "rich"], [(0, 2), (2, 3), (3, 5), (5, 6), (6, 10)]
    card = highlighted_text_html(text, tokens, [0.1, 0.9, 0.0, 0.0, 0.0], spans, words=[0, 1, 2, 2, 2])
    assert "Ġ" not in card and 'title="␣: +90.0%' in card
    assert "<mark>" not in card  # the deep space alone: a mark around nothing a reader sees
    assert html.unescape(re.sub(r"<[^>]+>", "", card)) == text
