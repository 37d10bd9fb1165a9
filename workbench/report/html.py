"""HTML fragments: tables, highlighted examples, errors, run records; every text from the data escaped here.

Every piece of text from the data (example texts, labels, column names, parameters) goes
through :func:`escape` in this module, in one place, so an example reading ``<script>...`` is
shown as text and runs nothing; chart labels go through :func:`plotly_text`, since plotly draws
the tags it finds in its strings. Both show bidirectional control characters as visible marks:
a right-to-left override in one example would otherwise reverse everything after it on the line
(its other columns, the page's title), and the reader would see text the data does not hold.
"""

from __future__ import annotations

import datetime as dt
import os
import html
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..core.words import BLANK, PAIR_SEPARATOR, read_bounds, word_positions
from .css import CSS


#: Bidirectional embeddings, overrides and isolates, each shown as a visible mark (as code review
#: tools show them) rather than applied to the text around it.
BIDI_CONTROLS = {code: f"⟨U+{code:04X}⟩" for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}


def escape(value) -> str:
    """Text for HTML, quotes included, so it is safe in element content and in attributes."""
    return html.escape("" if value is None else str(value), quote=True).translate(BIDI_CONTROLS)


def plotly_text(value) -> str:
    """A label, name or title for a plotly chart: shown as written, not read as plotly's markup
    (``<b>``, ``<br>``, ``<a href>``); plotly turns the entities back into the characters. Quotes
    too, as numeric entities (plotly.js decodes ``&#34;``, not ``&quot;``), so that no text of the
    data reaches the page's chart JSON as ``onerror="...``."""
    return html.escape(str(value), quote=True).replace("&quot;", "&#34;").translate(BIDI_CONTROLS)


#: JupyterLab typesets ``$...$`` in HTML outputs: these classes keep MathJax off the data's text.
CONTAINER_CLASSES = "npeff tex2jax_ignore mathjax_ignore"


def style() -> str:
    return f"<style>{CSS}</style>"


def fragment(body: str) -> str:
    """A self-styled block for a notebook output."""
    return f'{style()}<div class="{CONTAINER_CLASSES}">{body}</div>'


def format_value(value) -> str:
    """A table cell: floats to 3 significant digits, missing values empty, everything escaped."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return escape(f"{value:.3g}")
    if isinstance(value, np.generic):
        value = value.item()
    return escape(value)


def bound_text(value: float) -> str:
    """An interval's bound at the precision of its partner: 4.00 beside 1.68 (not 4), 2620 (not 2.62e+03)."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:#.3g}"  # 640, not "640." nor 2.62e+03


def table_html(frame: pd.DataFrame, *, index_links: dict | None = None, bars: Sequence[str] | Mapping[str, float] = (),
               titles: dict | None = None, sortable: bool = False, row_ids: str | None = None,
               labelled_by: str | None = None, label: str | None = None) -> str:
    """A DataFrame as an HTML table, every header and cell escaped, in a box that scrolls sideways
    when the table is wider than the page (nothing clipped).

    index_links: {index value: href} turns index cells into links.
    bars: columns drawn with a small bar beside the number: {column: value of a full bar}, or a
    list of columns in [0, 1] (full at 1), as :func:`bar_columns` chooses them.
    titles: {column: definition}, shown as the header's tooltip.
    sortable: a click on a header, or Enter or Space on it, sorts the rows (by the page's script,
    ``pages.SORT_SCRIPT``). Each header's name is a button, as WAI-ARIA's sortable table has it: a screen
    reader hears that the headers sort before one is used; ``aria-sort`` is on the sorted column alone
    (the index's, from the start, where the rows are in its order).
    row_ids: each row's id is this prefix and its index value, so that a link can lead back to it.
    labelled_by: the id of the heading that names the table (or ids, space-separated), for a screen reader's list
    of tables (:func:`new_id` makes ids that stay unique where a page repeats its headings).
    label: the table's name where no heading names it.
    """
    index_name = frame.index.name or ""
    titles = titles or {}
    bars = bars if isinstance(bars, Mapping) else dict.fromkeys(bars, 1.0)
    numbered = pd.api.types.is_numeric_dtype(frame.index) and not pd.api.types.is_bool_dtype(frame.index)
    in_order = sortable and numbered and frame.index.is_monotonic_increasing

    def header(column, first: bool) -> str:
        title = titles.get(str(column))
        name = escape(column).replace("_", "_<wbr>")  # where a narrow column may wrap a name: never inside a word
        tooltip = f' title="{escape(title)}"' if title else ""
        if not sortable:
            return f"<th{tooltip}>{name}</th>"
        order = ' aria-sort="ascending"' if first and in_order else ""
        unnamed = "" if str(column) else ' aria-label="index"'  # a button needs a name: pandas calls it the index
        return f'<th{tooltip}{order}><button type="button"{unnamed}>{name}</button></th>'

    head = "".join(header(c, i == 0) for i, c in enumerate([index_name, *frame.columns]))
    rows = []
    for key, row in zip(frame.index, frame.itertuples(index=False)):
        cell = format_value(key)
        if index_links and key in index_links:
            cell = f'<a href="{escape(index_links[key])}">{cell}</a>'
        index_number = isinstance(key, (int, float, np.number)) and not isinstance(key, (bool, np.bool_))
        cells = [f'<td data-sort="{sort_key(key)}">{cell}</td>' if index_number else f'<td class="text" dir="auto">{cell}</td>']
        for column, value in zip(frame.columns, row):
            text = format_value(value)
            full = bars.get(column)
            if full and full > 0 and isinstance(value, (float, np.floating)) and np.isfinite(value):
                # a negative value (a token that cancels the component) has a bar of its size, in the cancelling colour
                kind = "bar cancels" if value < 0 else "bar"
                text += f'<span class="{kind}" style="width:{40 * min(abs(float(value)) / full, 1.0):.0f}px"></span>'
            # a right-to-left text sets its own direction, without reordering the numbers around it
            kind = ' class="text" dir="auto"' if isinstance(value, str) else ' class=""'
            number = isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))
            order = f' data-sort="{sort_key(value)}"' if number else ""
            cells.append(f'<td{kind}{order}>{text}</td>')
        row_id = f' id="{escape(row_ids)}{escape(key)}"' if row_ids is not None else ""
        rows.append(f"<tr{row_id}>{''.join(cells)}</tr>")
    classes = "npeff-table sortable" if sortable else "npeff-table"
    name = (f' aria-labelledby="{escape(labelled_by)}"' if labelled_by
            else f' aria-label="{escape(label)}"' if label else "")
    return (f'<div class="table-wrap"><table class="{classes}"{name}><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def new_id(name: str) -> str:
    """An id for a heading that names a table: ``name`` and a random part, since the same headings repeat on a
    page (a dashboard's "Top tokens" once per component, a notebook showing one dashboard twice)."""
    return f"{name}-{uuid.uuid4().hex[:12]}"


def sort_key(value) -> str:
    """A number as the sort script reads it (JavaScript's ``parseFloat``): a missing value empty, which
    the script puts last, and infinities spelled as JavaScript spells them."""
    value = float(value)
    if np.isnan(value):
        return ""
    return repr(value) if np.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")


def bar_columns(frame: pd.DataFrame) -> dict[str, float]:
    """The columns of a component table drawn with bars, and the value of a full bar. Purities and
    accuracy are shares of examples: full at 1. ``mass`` is each component's share of the total
    (1/n on average: 0.06 with 16 components, 0.003 with 300), bars 40 px × mass would be 0 to 4 px
    wide: full at the column's largest value, so that the bars compare the rows. A table of one row
    has no rows to compare: its mass has no bar."""
    bars = {c: 1.0 for c in frame.columns if str(c).endswith("_purity") or c == "accuracy"}
    if "mass" in frame.columns and len(frame) > 1:
        largest = pd.to_numeric(frame["mass"], errors="coerce").max()
        if np.isfinite(largest) and largest > 0:
            bars["mass"] = float(largest)
    return bars


def component_page_html(page, *, links: dict | None = None) -> str:
    """A :class:`~workbench.app.explore.ComponentPage` as a captioned table."""
    caption = new_id("components")
    return fragment(f'<div class="caption" id="{caption}">{escape(page.caption())}</div>'
                    + table_html(page.rows, index_links=links, bars=bar_columns(page.rows), labelled_by=caption))


#: The shading's colours, as CSS variables (with the light scheme's as their fallback): on a dark page
#: the light orange under white text read at 2.6:1, so the dark scheme has a deeper one.
SHADES = {"carries": "255,140,0", "cancels": "40,120,255"}


def token_colour(score: float, scale: float) -> str:
    """Orange for tokens that carry the component's Fisher mass, blue for ones that cancel it."""
    alpha = 0.0 if scale <= 0 else min(abs(score) / scale, 1.0) * 0.8
    side = "carries" if score >= 0 else "cancels"
    return f"rgba(var(--{side}, {SHADES[side]}),{alpha:.2f})"


def is_deep(score: float, scale: float) -> bool:
    """Whether a token's shade is strong enough to need the text colour of its own that the dark scheme gives it."""
    return scale > 0 and abs(score) / scale >= 0.5


def token_classes(score: float, scale: float) -> str:
    """``tok``, the side the token is on (``carries``, ``cancels``), and ``deep`` where :func:`is_deep`."""
    side = "carries" if score >= 0 else "cancels"
    return f"tok {side}" + (" deep" if is_deep(score, scale) else "")


def percent(value: float, sign: str = "") -> str:
    """``value`` as a whole percentage; a value that rounds to 0 reads 0%, never -0%."""
    text = f"{value:{sign}.0%}"
    return "0%" if text in ("-0%", "+0%") else text


#: The colour legend and the meaning of the three shares, shown above highlighted examples.
LEGEND = (
    f'<div class="legend">Token shading: <span class="swatch carries" style="background:{token_colour(1.0, 1.0)}"></span>'
    f'a positive share, <span class="swatch cancels" style="background:{token_colour(-1.0, 1.0)}"></span>a negative share '
    "(its term points against the rest); shares say where the Fisher mass flows, not what deleting a word would do. "
    "Each example's strongest word (of the largest |share|, in either colour) is fully shaded and underlined; "
    "a word's share is of the words' total |share| (hover a word for it and for its share of the whole mass). "
    "<b>words</b> + <b>special</b> + <b>head</b> = 100% of the example's Fisher mass along the component: "
    "<b>special</b> flows through [CLS]/[SEP]-like tokens, <b>head</b> through the classification head (pooler, "
    "classifier, a decoder's score layer) and parameters with no token axis, so no word can be credited with "
    "either.</div>"
)


def highlighted_text_html(text: str, tokens: Sequence[str] | None, scores, spans=None, special=None,
                          raw=None, strongest: Iterable[int] = (), words=None) -> str:
    """The example with each token's span shaded by its score, the tokens ``strongest`` (the pieces of the
    strongest word) also underlined (so it is found without telling colours apart).

    With ``spans`` (character offsets of each token in ``text``, from a fast tokenizer) the
    original text is shown, so nothing is lost to unknown tokens; otherwise the tokens.
    The shading's scale is the largest |score| over the visible tokens (special tokens are never
    shown, so they never set the scale); ``scores`` are shares of the visible tokens
    (``analysis.token_shares``) and ``raw``, when given, the same tokens' shares of the whole
    mass; both are in each token's tooltip. The deeply shaded words that carry the component are in
    ``<mark>``, one per run of them, which a screen reader announces as highlighted: the shading alone
    told it nothing, and a number per word would bury the text. A word is marked whole (``words``: each
    token's word id) when one of its pieces is deep: MiniLM's "blick" was marked as 'lick'.
    """
    if tokens is None or scores is None:
        return text_box_html(text, escape(text))
    scores = np.asarray(scores, dtype=np.float64)
    special = np.zeros(len(tokens), dtype=bool) if special is None else np.asarray(special, dtype=bool)
    visible = np.abs(scores[~special])
    scale = float(visible.max()) if len(visible) else 0.0
    raw = [None] * len(tokens) if raw is None else list(raw)
    strongest, marked = set(strongest), _marked_tokens(scores, scale, special, words)

    def span(i: int, piece: str) -> str:
        # the word as the text spells it, not the tokenizer's piece ('Ġbad', '▁bad', '##bad')
        # a lone space's tooltip named it by the tokenizer's mark ('Ġ', '▁'), which the text never shows
        score, token, whole = scores[i], piece.strip() or BLANK, raw[i]
        if whole is None:
            what = f"{token}: {score:+.1%} of the example's mass along the component"
        else:
            what = f"{token}: {score:+.1%} of the words' share ({whole:+.2%} of the example's mass along the component)"
        classes = token_classes(score, scale) + (" strongest" if i in strongest else "")
        shaded = (f'<span class="{classes}" style="background:{token_colour(score, scale)}" title="{escape(what)}">'
                  f"{escape(piece)}</span>")
        return f"<mark>{shaded}</mark>" if i in marked and piece.strip() else shaded  # a mark around a space says nothing

    if spans is not None:
        pieces, cursor = [], 0
        for i, (start, stop) in enumerate(spans[:min(len(tokens), len(scores))]):
            start = max(start, cursor)  # byte-level pieces of one character share its span: shown once
            if special[i] or stop <= start:
                continue
            if start > cursor:  # a prompt's model cuts a long text at its start: the words before its first token
                gap = text[cursor:start]
                pieces.append(unread_html(gap, at_start=not pieces) if not pieces or PAIR_SEPARATOR in gap else escape(gap))
            piece = text[start:stop]
            lead = len(piece) - len(piece.lstrip())  # byte-level and SentencePiece pieces hold the space before the word
            if 0 < lead < len(piece):
                pieces.append(escape(piece[:lead]))
            pieces.append(span(i, piece[lead:] if lead < len(piece) else piece))
            cursor = stop
        pieces.append(unread_html(text[cursor:]))
        return text_box_html(text, _join_marks("".join(pieces)))
    shown = [span(i, token) for i, token in enumerate(tokens) if not special[i]]
    return f'<div class="tokens" dir="auto">{_join_marks(" ".join(shown))}</div>'


def text_box_html(text: str, body: str) -> str:
    """``body`` (``text`` as HTML) in its box, in the direction of its first letter. A pair's texts are isolated
    on either side of the seam, each in its own direction: joined in one paragraph, an Arabic premise turned an
    English hypothesis's closing '?' to its start."""
    first, separator, second = body.partition(escape(PAIR_SEPARATOR))
    if not separator or PAIR_SEPARATOR not in text:
        return f'<div class="tokens" dir="auto">{body}</div>'
    # the box's own direction as dir="auto" would find it, which skips the text inside <bdi>
    strong = next((unicodedata.bidirectional(c) for c in text if unicodedata.bidirectional(c) in ("L", "R", "AL")), "L")
    return (f'<div class="tokens" dir="{"ltr" if strong == "L" else "rtl"}"><bdi>{first}</bdi>{separator}'
            f"<bdi>{second}</bdi></div>")


def _marked_tokens(scores: np.ndarray, scale: float, special: np.ndarray, words) -> set[int]:
    """The tokens in ``<mark>``: every piece of each word one of whose pieces carries the component deeply."""
    deep = {i for i, score in enumerate(scores) if score >= 0 and is_deep(score, scale)}
    return {i for word in word_positions(words, len(scores)) if deep.intersection(word) for i in word if not special[i]}


def _join_marks(body: str) -> str:
    """Neighbouring marks as one (the pieces of a word, words a space apart): "highlighted, out of highlighted"
    said between each."""
    return re.sub(r"</mark>(\s*)<mark>", r"\1", body)


#: Characters of a text the model did not read (cut at its max_length) shown before "… N more".
UNREAD_SHOWN = 200


def has_words(text: str) -> bool:
    """Whether ``text`` holds a letter or a digit: what a tokenizer drops (spaces, an accent typed apart, an
    emoji's variation selector, U+FFFD) is not a part of the text the model left unread."""
    return any(unicodedata.category(c)[0] in "LN" for c in text)


def read_text(text: str, spans, special=None) -> str:
    """``text`` as plain text with what the model did not read (before its first token, after its last)
    replaced by a note of how long it is: for the text views of a page, as :func:`unread_html` marks it. A pair's
    texts are read each on its own: a premise cut at its end read whole up to the hypothesis."""
    pair = _pair_parts(text, spans, special)
    if pair is not None:
        (first, *one), separator, (second, *two) = pair
        return read_text(first, *one) + separator + read_text(second, *two)
    bounds = read_bounds(spans, special)
    if bounds is None:
        return text
    head, body, tail = text[:bounds[0]], text[bounds[0]:bounds[1]], text[bounds[1]:]
    return ((f"[{len(head):,} characters not read] " if has_words(head) else head) + body
            + (f" [the model read no further: {len(tail):,} more characters]" if has_words(tail) else tail))


def read_html(text: str, spans, special=None) -> str:
    """``text`` as HTML with what the model did not read marked (:func:`unread_html`), as :func:`read_text`
    notes it: for a text shown without its tokens' shading (a lookup's), which showed a cut text whole."""
    pair = _pair_parts(text, spans, special)
    if pair is not None:
        (first, *one), separator, (second, *two) = pair
        return read_html(first, *one) + escape(separator) + read_html(second, *two)
    bounds = read_bounds(spans, special)
    if bounds is None:
        return escape(text)
    return (unread_html(text[:bounds[0]], at_start=True) + escape(text[bounds[0]:bounds[1]])
            + unread_html(text[bounds[1]:]))


def _pair_parts(text: str, spans, special):
    """A pair's (first, its spans, flags), separator, (second, its spans, flags), each text's spans in it; None
    for a single text, or without spans."""
    first, separator, second = text.partition(PAIR_SEPARATOR)
    if not (separator and spans):
        return None
    seam, flags = len(first) + len(separator), special if special is not None else [False] * len(spans)
    ones = [(span, flag) for span, flag in zip(spans, flags) if span[1] <= len(first)]
    twos = [((a - seam, b - seam), flag) for (a, b), flag in zip(spans, flags) if a >= seam]
    return ((first, [s for s, _ in ones], [f for _, f in ones]), separator,
            (second, [s for s, _ in twos], [f for _, f in twos]))


def unread_html(rest: str, *, at_start: bool = False) -> str:
    """Text outside the model's tokens: as it is where no word is in it (spaces, or what a tokenizer drops: a
    combining accent, an emoji's variation selector, U+FFFD), else the part the model never read (a text cut
    at max_length; at its start for a model read through a prompt), marked and cut short. It was shown as if
    read: 10,235 characters of a card, 309 of them scored, and nothing to say where the model's input ended."""
    before, separator, after = rest.partition(PAIR_SEPARATOR)
    if separator and not at_start:  # a pair's texts, each cut short (longest first) or not: each marked on its own
        return unread_html(before) + escape(separator) + unread_html(after)
    if not has_words(rest):
        return escape(rest)
    title = "the model did not read this: the text was cut at its maximum length"
    more = len(rest) - UNREAD_SHOWN
    if at_start:
        head = (f"<i>{more:,} characters before … </i>" if more > 0 else "") + escape(rest[-UNREAD_SHOWN:])
        return (f'<span class="unread" title="{title}">{head} <b class="cut">✂ the model read from here</b> </span>')
    tail = escape(rest[:UNREAD_SHOWN]) + (f"<i> … {more:,} more characters</i>" if more > 0 else "")
    return f'<span class="unread" title="{title}"><b class="cut">✂ the model read no further</b> {tail}</span>'


def shares_html(example) -> str:
    """The three named shares of an example's mass along the component: words, special tokens, head."""
    parts = [("words", getattr(example, "visible_share", None), "visible tokens: the words of the text"),
             ("special", getattr(example, "special_share", None), "special tokens such as [CLS] and [SEP]"),
             ("head", getattr(example, "head_share", None), "the classification head and parameters with no token axis")]
    shown = [f'<span title="{escape(title)}"><b>{name}</b> {percent(value)}</span>'
             for name, value, title in parts if value is not None]
    return f'<span class="shares">{" ".join(shown)}</span>' if shown else ""


def _isolated_label(text: str) -> str:
    """A label as ``0 (name)``, escaped, the name in <bdi>: a right-to-left name keeps its number and the meta
    line's order in place (isolating the whole moved the number to the name's other side)."""
    match = re.fullmatch(r"(\S+) \((.*)\)", text, flags=re.S)
    if match:
        return f"{escape(match.group(1))} (<bdi>{escape(match.group(2))}</bdi>)"
    return f"<bdi>{escape(text)}</bdi>"


def example_html(example, label_name=str) -> str:
    wrong = example.label is not None and example.prediction is not None and example.label != example.prediction
    prediction = _isolated_label(label_name(example.prediction))
    meta = [
        f"#{example.rank + 1}", f"example {example.example}", f"label {_isolated_label(label_name(example.label))}",
        f'prediction <span class="wrong">{prediction}</span>' if wrong else f"prediction {prediction}",
        f"coefficient {example.coefficient:.4g}",
    ]
    shares = shares_html(example)
    if shares:
        meta.append(shares)
    visible = getattr(example, "visible", None)
    scores = example.scores if visible is None else visible
    spans = getattr(example, "spans", None)
    strongest = getattr(example, "strongest_positions", [])
    if strongest:
        word, share = example.strongest_token, percent(example.strongest_share, "+")
        read_out = ("; the model reads its class here, so this share holds that read-out too"
                    if getattr(example, "strongest_is_read_out", False) else "")
        meta.append(f"strongest word <b><bdi>{escape(word)}</bdi></b> ({share} of the words' share{read_out})")
    body = highlighted_text_html(example.text, example.tokens, scores, spans, example.special,
                                 raw=None if visible is None else example.scores, strongest=strongest,
                                 words=getattr(example, "words", None))
    return f'<div class="example"><div class="meta">{" · ".join(meta)}</div>{body}</div>'


def examples_page_html(page) -> str:
    """A :class:`~workbench.app.explore.TopExamplesPage`: caption, then one card per example."""
    parts = [f'<div class="caption">{escape(page.caption())}</div>']
    if any(e.scores is not None for e in page.examples):
        parts.append(LEGEND)
    parts += [example_html(e, page.label_name) for e in page.examples]
    if page.note:
        parts.append(f'<div class="note">{escape(page.note)}</div>')
    return fragment("".join(parts))


def deletions_html(checks) -> str:
    """The deletion check of a page of examples: ``checks`` of (example number, the shading's strongest
    word, ``analysis.lookup.deletion_effects`` frame). Per example, the words whose deletion
    costs the coefficient most, beside what deleting the shaded word costs. The strongest word is its place,
    (word, side, start, stop) with side a pair's "first" or "second" (None for one text) and the span in that
    text, or its text alone (a word met twice, or inside another, as "a" in "mat", is then the first that holds it),
    or None."""
    rows = []
    for example, strongest, effects in checks:
        needed = ", ".join(f"<bdi>{escape(w)}</bdi> {_drop(d)}" for w, d in zip(effects["word"][:3], effects["drop"][:3]))
        shaded = ""
        row = _shaded_row(effects, strongest) if strongest else None
        if row is not None:
            word = strongest if isinstance(strongest, str) else strongest[0]
            shaded = f"<bdi>{escape(word.strip())}</bdi> {_drop(row['drop'])}"
        rows.append(f"<tr><td>{int(example)}</td><td>{shaded}</td><td>{needed}</td></tr>")
    return ('<div class="deletions"><div class="caption">Deletion check: each word deleted in turn and the coefficient '
            "fitted again; the drop is the share of the coefficient lost without the word. The shading says where the "
            'Fisher mass flows, this what the coefficient needs.</div><div class="table-wrap"><table class="npeff-table">'
            "<thead><tr><th>example</th><th>shaded strongest word</th><th>words it needs most</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div></div>")


def _shaded_row(effects, strongest):
    """The deletion of the shaded word: the row whose word covers its place (a deleted word is the text's between
    spaces, the shaded one may be a part of it, as '&' of '<b>&amp;'), or, given its text alone, the row of that
    word, else of the first word that holds it. It was the largest drop of any word holding it: the shaded 'a' read
    the drop of 'mat'."""
    if isinstance(strongest, str):
        word = strongest.strip().casefold()
        words = effects["word"].str.casefold()
        named = effects[words == word]
        named = named if len(named) else effects[words.str.contains(word, regex=False)]
        return named.iloc[0] if len(named) else None
    _, side, start, stop = strongest
    rows = effects if side is None or "text" not in effects else effects[effects["text"] == side]
    overlap = np.minimum(rows["stop"], stop) - np.maximum(rows["start"], start)
    return rows.loc[overlap.idxmax()] if len(rows) and overlap.max() > 0 else None


def _drop(value: float) -> str:
    """A deletion's drop; none (NaN: the text loads on nothing) read 'nan%', and one of -0.00003 '-0%'."""
    return "—" if pd.isna(value) else percent(value)


def error_html(message: str, details: str = "") -> str:
    more = f"<details><summary>details</summary>{escape(details)}</details>" if details else ""
    return f'<div class="error">{escape(message)}{more}</div>'


def _plain_value(value) -> str:
    """A value for a line of prose: lists joined, floats to 3 significant digits, None as None."""
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:.3g}"
    return home_as_tilde(str(value))


def home_as_tilde(text: str) -> str:
    """A path in the user's home folder as ~/...: pages are shared, and /home/<name>/... named the user."""
    home = os.path.expanduser("~").rstrip(os.sep)
    if home and home != os.sep and (text == home or text.startswith(home + os.sep)):
        return "~" + text[len(home):]
    return text


def _items(pairs: Iterable[tuple[str, object]], marked: set = frozenset()) -> str:
    """``name value · name value`` with the marked names starred, all escaped."""
    return " · ".join(f"<b>{escape(k)}{'*' if k in marked else ''}</b> {escape(_plain_value(v))}" for k, v in pairs)


def _duration(record: dict) -> str:
    try:
        start = dt.datetime.fromisoformat(record["started"])
        end = dt.datetime.fromisoformat(record["finished"])
    except (KeyError, TypeError, ValueError):
        return ""
    return f" in {(end - start).total_seconds():.0f} s"


def _stage_time(stage: dict) -> str:
    """``4.79 s`` for a stage done; otherwise its status (running when this was written, or failed)."""
    seconds = f"{stage['seconds']} s" if "seconds" in stage else ""
    if stage.get("status") == "done":
        return seconds or "done"
    return f"{stage.get('status')} after {seconds}" if seconds else str(stage.get("status"))


def _run_status(record: dict) -> tuple[str, str]:
    """The run's status as shown, and a note on it.

    A notebook that runs the pipeline and then writes the report (the quickstart) completes the
    record only when it ends, after the page is written: the record still says "running" then,
    and a report saying so would say it for ever. When every stage of the pipeline is done and
    only notebooks are still running, the pipeline is shown complete and the notebooks as
    running when this was written (what the notebook did after that is in its own record).
    """
    status = str(record.get("status", "?"))
    stages = record.get("stages", {})
    notebooks = [name for name, n in record.get("notebooks", {}).items() if n.get("status") == "running"]
    if status == "running" and notebooks and stages and all(v.get("status") == "done" for v in stages.values()):
        return "pipeline complete", (f"all {len(stages)} stages done; notebook {', '.join(notebooks)} "
                                     "was still running when this was written")
    return status, ""


def run_section_html(record: dict, *, title: str = "This run", heading: bool = True) -> str:
    """A short "this run" section from a run record (run.json): status, device, versions, seeds,
    the notebooks that ran (their parameters, papermill's injected ones starred), stage timings,
    figures, and every parameter in a collapsed list. ``heading=False`` titles it in bold text, for a
    page whose first heading is its own (a notebook's h1, which an h2 above it put out of order)."""
    env = record.get("environment", {})
    versions = env.get("versions", {})
    shown_versions = ", ".join(f"{k} {v}" for k, v in versions.items()
                               if k in ("npeff-workbench", "torch", "transformers", "papermill"))
    status, note = _run_status(record)
    lines = [
        f"<b>{escape(status)}</b>{escape(f' ({note})' if note else '')}, started {escape(record.get('started', '?'))}"
        f"{escape(_duration(record))} · device {escape(env.get('device') or 'cpu')} · {escape(shown_versions)} · "
        f"python {escape(env.get('python', '?'))} · seeds "
        + escape(", ".join(f"{k} {v}" for k, v in record.get("seeds", {}).items()) or "none"),
    ]
    for name, notebook in record.get("notebooks", {}).items():
        injected = set(notebook.get("injected", []))
        ran = (f"{notebook.get('status')} in {notebook.get('seconds', '?')} s" if notebook.get("status") != "running"
               else "still running when this was written")
        lines.append(
            f"notebook <b>{escape(name)}</b> ({escape(home_as_tilde(str(notebook.get('source'))))}, {escape(ran)}, "
            f"papermill {escape(notebook.get('papermill', '?'))}): "
            + _items(notebook.get("parameters", {}).items(), injected) + (" (* injected)" if injected else ""))
    stages = record.get("stages", {})
    if stages:
        lines.append("stages: " + " · ".join(f"<b>{escape(k)}</b> {escape(_stage_time(v))}"
                                             for k, v in stages.items()))
    figures = record.get("figures", {})
    if figures:
        lines.append("figures: " + _items(figures.items()))
    params = record.get("params", {})
    details = (f"<details><summary>all {len(params)} parameters</summary>{_items(params.items())}</details>"
               if params else "")
    body = "".join(f'<div class="run-line">{line}</div>' for line in lines)
    top = f"<h2>{escape(title)}</h2>" if heading else f'<div class="run-line"><b>{escape(title)}</b></div>'
    return fragment(f'<section class="this-run" aria-label="{escape(title)}">{top}{body}{details}</section>')


def run_section_text(record: dict) -> str:
    status, note = _run_status(record)
    lines = [f"status {status}{f' ({note})' if note else ''}, started {record.get('started')}",
             "parameters: " + ", ".join(f"{k}={v!r}" for k, v in record.get("params", {}).items())]
    lines += [f"figure {k}: {v}" for k, v in record.get("figures", {}).items()]
    return "\n".join(lines)
