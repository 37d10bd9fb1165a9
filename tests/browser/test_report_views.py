"""The report as other readers' browsers show it: a dark system scheme (also inside a notebook's HTML,
whose own table styles are light), Windows' high-contrast mode, a phone, the keyboard, paper, and a
browser with JavaScript off. Each view once hid part of the reading: dark headers at 1.3:1, the
strongest words at 2.6:1, shading gone in high contrast, a page wider than a phone, 800 modebar
buttons in the tab order, charts and columns cut off on paper, empty chart boxes without a word."""

import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbconvert import HTMLExporter

from workbench import report
from workbench.app.explore import RunExplorer

from .lab import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"no {CHROMIUM}: `make test` installs it (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def explorer(embedded_run):
    return RunExplorer.open(embedded_run.path)


@pytest.fixture(scope="module")
def report_index(explorer, tmp_path_factory):
    return report.export_html(explorer, tmp_path_factory.mktemp("views") / "report", n_examples=3, progress=False)


@pytest.fixture(scope="module")
def notebook_page(explorer, tmp_path_factory):
    """A notebook's HTML (nbconvert's lab template, as `python -m workbench run` writes it) holding a
    component table and highlighted examples."""
    outputs = [nbformat.v4.new_output("display_data", data=bundle) for bundle in (
        explorer.components()._repr_mimebundle_(), explorer.top_examples(0, page_size=3)._repr_mimebundle_())]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("explorer", outputs=outputs)])
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(notebook)
    path = tmp_path_factory.mktemp("notebook") / "notebook.html"
    path.write_text(body, encoding="utf-8")
    return path


def open_page(browser, path, width=1280, **options):
    page = browser.new_page(viewport={"width": width, "height": 900}, **options)
    page.goto(path.as_uri())
    return page


def rgba(css: str) -> tuple[float, float, float, float]:
    values = [float(v) for v in re.findall(r"[\d.]+", css)]
    return (*values[:3], values[3] if len(values) > 3 else 1.0)


def over(top: str, below: tuple) -> tuple:
    """The colour ``top`` (CSS, maybe translucent) painted over the opaque colour ``below``."""
    *rgb, alpha = rgba(top)
    return tuple(alpha * c + (1 - alpha) * b for c, b in zip(rgb, below[:3]))


def contrast(a: tuple, b: tuple) -> float:
    """WCAG's contrast ratio of two opaque colours."""
    def luminance(colour):
        linear = [(c / 255) / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in colour[:3]]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


#: For each header, cell and shaded token: [text colour, its background, the background of .npeff].
COLOURS = """() => {
  const base = getComputedStyle(document.querySelector('.npeff')).backgroundColor;
  const pick = (selector) => Array.from(document.querySelectorAll(selector)).slice(0, 40).map(e => {
    let background = getComputedStyle(e).backgroundColor;
    for (let p = e; p && background === 'rgba(0, 0, 0, 0)'; p = p.parentElement) background = getComputedStyle(p).backgroundColor;
    return [getComputedStyle(e).color, background, base];
  });
  return {headers: pick('.npeff table.npeff-table th'), cells: pick('.npeff table.npeff-table td'),
          tokens: pick('.npeff .tok.deep')};
}"""


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_tables_and_the_strongest_words_read_in_either_scheme(browser, report_index, notebook_page, scheme):
    for path in (report_index, notebook_page):
        page = open_page(browser, path, color_scheme=scheme)
        colours = page.evaluate(COLOURS)
        page.close()
        assert colours["headers"] and colours["cells"] and colours["tokens"], (path.name, colours)
        for kind, found in colours.items():
            ratios = [contrast(over(text, over(background, rgba(base))), over(background, rgba(base)))
                      for text, background, base in found]
            assert min(ratios) >= 4.5, (path.name, scheme, kind, min(ratios), found[int(np.argmin(ratios))])


def test_high_contrast_mode_keeps_the_shading_and_the_legend(browser, report_index):
    page = open_page(browser, report_index, forced_colors="active")
    swatches = page.locator(".npeff .legend .swatch").evaluate_all(
        "els => els.map(e => getComputedStyle(e).backgroundColor)")
    shades = page.locator(".npeff .tok").evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)")
    bars = page.locator(".npeff td .bar").evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)")
    # and told apart by no colour: the deep words framed, solid where they carry, dashed where they cancel
    frames = page.locator(".npeff .tok.deep, .npeff div.legend .swatch").evaluate_all(
        "els => els.map(e => [e.classList.contains('cancels'), getComputedStyle(e).outlineStyle])")
    page.close()
    assert {cancels for cancels, _ in frames} == {True, False}, frames
    assert all(style == ("dashed" if cancels else "solid") for cancels, style in frames), frames
    assert len(set(swatches)) == 2, swatches  # carries and cancels told apart
    assert len(set(shades)) > 5, shades[:10]  # the words shaded by their share, not all one system colour
    assert bars and all(rgba(b)[3] > 0 and b != "rgb(0, 0, 0)" for b in bars), bars[:5]


#: How many pixels of two PNG images (base64) differ, and by how much at most (0 to 255).
PIXEL_DIFFERENCE = """async ([a, b]) => {
  const pixels = async (png) => {
    const image = new Image(); image.src = 'data:image/png;base64,' + png; await image.decode();
    const canvas = Object.assign(document.createElement('canvas'), {width: image.width, height: image.height});
    canvas.getContext('2d').drawImage(image, 0, 0);
    return canvas.getContext('2d').getImageData(0, 0, image.width, image.height).data;
  };
  const [p, q] = [await pixels(a), await pixels(b)];
  let count = 0, largest = 0;
  for (let i = 0; i < p.length; i++) { const d = Math.abs(p[i] - q[i]); if (d) { count++; largest = Math.max(largest, d); } }
  return p.length === q.length ? [count, largest] : [p.length, 255];
}"""


@pytest.mark.parametrize("view", [{"color_scheme": "light"}, {"color_scheme": "dark"}, {"forced_colors": "active"}])
def test_a_screen_reader_hears_which_words_carry_the_component_and_the_eye_sees_no_change(browser, tmp_path, view):
    """The shading was lost on a screen reader: the words that carry the component are marks, which it announces as
    highlighted, a run of words at a time, and which look as the shading alone did (the browser's yellow reset), in
    the light and dark schemes and in high contrast."""
    import base64

    words = "an unbelievably bad film , truly awful".split(" ")
    spans = [(sum(len(w) + 1 for w in words[:i]), sum(len(w) + 1 for w in words[:i]) + len(word))
             for i, word in enumerate(words)]
    body = report.highlighted_text_html(" ".join(words), words, [0.02, 0.3, 0.35, 0.4, 0.01, 0.05, -0.4], spans=spans,
                                        strongest=[3])
    path = tmp_path / "example.html"
    path.write_text(report.html_page("example", body), encoding="utf-8")
    page = open_page(browser, path, width=600, **view)
    tokens = page.locator(".tokens")
    heard = tokens.aria_snapshot()
    marked = tokens.screenshot()
    page.evaluate("document.querySelectorAll('mark').forEach(m => m.replaceWith(...m.childNodes))")
    shaded = tokens.screenshot()
    count, largest = page.evaluate(PIXEL_DIFFERENCE, [base64.b64encode(marked).decode(), base64.b64encode(shaded).decode()])
    page.close()
    assert heard == '- text: an\n- mark: unbelievably bad film\n- text: ", truly awful"', heard
    assert count <= 4 and largest <= 16, (count, largest)  # the same but for a frame's antialiased corner


#: Each chart's paper colour (plotly paints it as its first svg's background).
PAPERS = "Array.from(document.querySelectorAll('.npeff-plot .svg-container > svg.main-svg:first-child')).map(s => getComputedStyle(s).backgroundColor)"


def test_charts_follow_the_dark_scheme_and_print_light(browser, report_index):
    """plotly's template is white: every chart was a white box on the dark page, and the dark scheme's light
    greys printed grey on white paper."""
    page = open_page(browser, report_index, color_scheme="dark")
    page.wait_for_function("document.querySelectorAll('.npeff-plot .main-svg').length >= 30")
    page.wait_for_timeout(500)
    dark = page.evaluate(PAPERS)
    page.evaluate("window.dispatchEvent(new Event('beforeprint'))")
    page.wait_for_timeout(300)
    printed = page.evaluate(PAPERS)
    page.emulate_media(media="print")
    ink = page.evaluate("getComputedStyle(document.querySelector('.npeff')).color")
    page.emulate_media(media="screen")
    page.evaluate("window.dispatchEvent(new Event('afterprint'))")
    page.wait_for_timeout(300)
    again = page.evaluate(PAPERS)
    page.close()
    assert len(dark) >= 30 and set(dark) == {"rgb(27, 29, 33)"}, set(dark)  # the page's own --bg
    assert set(printed) == {"rgb(255, 255, 255)"}, set(printed)
    assert ink == "rgb(34, 34, 34)"  # the light scheme's --fg on paper
    assert again == dark

#: The charts whose title runs past the chart's edges: [title, its left and right, the chart's left and right].
TITLES_OUTSIDE = """() => Array.from(document.querySelectorAll('.npeff-plot')).map(function (plot) {
  var svg = plot.querySelector('svg.main-svg'), title = plot.querySelector('.gtitle');
  if (!svg || !title) return null;
  var s = svg.getBoundingClientRect(), t = title.getBoundingClientRect();
  return [title.textContent, t.left, t.right, s.left, s.right];
}).filter(function (r) { return r && (r[1] < r[3] - 1 || r[2] > r[4] + 1); })"""
#: The charts whose title runs under the modebar (its buttons, shown on hover, covered a narrow chart's title).
TITLES_UNDER_MODEBAR = """() => Array.from(document.querySelectorAll('.npeff-plot')).map(function (plot) {
  var bar = plot.querySelector('.modebar'), title = plot.querySelector('.gtitle');
  if (!bar || !title) return null;
  var b = bar.getBoundingClientRect(), t = title.getBoundingClientRect();
  return [title.textContent, t.top, b.bottom];
}).filter(function (r) { return r && r[1] < r[2] - 1; })"""


def test_a_phone_reads_the_report_without_scrolling_sideways(browser, report_index):
    page = open_page(browser, report_index, width=320)
    page.wait_for_function("document.querySelectorAll('.npeff-plot .main-svg').length >= 30")
    page.wait_for_timeout(500)
    width, client = page.evaluate("[document.scrollingElement.scrollWidth, document.scrollingElement.clientWidth]")
    titles, covered = page.evaluate(TITLES_OUTSIDE), page.evaluate(TITLES_UNDER_MODEBAR)
    page.close()
    assert width <= client, (width, client)
    assert not titles, titles  # every chart's title whole (they ran past the chart's right edge at 360 px)
    assert not covered, covered  # and below the modebar


def test_charts_are_named_and_their_buttons_stay_out_of_the_tab_order(browser, report_index):
    page = open_page(browser, report_index)
    page.wait_for_function("document.querySelectorAll('.npeff-plot .modebar-btn').length >= 30")
    tabbable = page.evaluate("document.querySelectorAll('.npeff-plot .modebar-btn:not([tabindex=\"-1\"])').length")
    labels = page.locator(".npeff-plot").evaluate_all("els => els.map(e => [e.getAttribute('role'), e.getAttribute('aria-label')])")
    # what a screen reader reads: each chart its label, not its tick labels and ten buttons (800 in a report of 80)
    tree = page.context.new_cdp_session(page).send("Accessibility.getFullAXTree")["nodes"]
    read = [node.get("name", {}).get("value") for node in tree if not node.get("ignored")]
    page.close()
    assert tabbable == 0
    assert "Download plot as a PNG" not in read and "Reset axes" not in read
    assert all(role == "img" and label for role, label in labels), labels[:5]
    assert len({label for _, label in labels}) > 3, labels  # each named by its own title


def test_printing_keeps_every_chart_and_column_on_the_paper(browser, report_index, tmp_path):
    page = open_page(browser, report_index, width=1920)  # charts wider than a page
    page.wait_for_function("document.querySelectorAll('.npeff-plot .main-svg').length >= 30")
    page.evaluate("window.dispatchEvent(new Event('beforeprint'))")
    page.wait_for_timeout(500)
    widths = page.evaluate("Array.from(document.querySelectorAll('.npeff-plot svg.main-svg')).map(s => s.getBoundingClientRect().width)")
    assert widths and max(widths) <= 681, max(widths)  # an A4 page holds 718 px
    page.emulate_media(media="print")
    overflow = page.evaluate("getComputedStyle(document.querySelector('.npeff .table-wrap')).overflowX")
    numbers = page.evaluate("Array.from(document.querySelectorAll('.npeff td[data-sort]')).map(c => getComputedStyle(c).whiteSpace)")
    charts = page.evaluate("getComputedStyle(document.querySelector('.npeff .charts')).display")
    # printers drop backgrounds by default: every word's shading and every bar was lost on paper
    kept = page.evaluate("['.npeff .tok', '.npeff .bar', '.npeff .legend .swatch'].map(s => "
                         "getComputedStyle(document.querySelector(s)).printColorAdjust)")
    pdf = tmp_path / "report.pdf"
    page.pdf(path=str(pdf), format="A4")
    page.emulate_media(media="screen")
    page.evaluate("window.dispatchEvent(new Event('afterprint'))")
    page.wait_for_timeout(500)
    after = page.evaluate("Array.from(document.querySelectorAll('.npeff-plot svg.main-svg')).map(s => s.getBoundingClientRect().width)")
    page.close()
    assert overflow == "visible"  # on paper a wide table wraps: nothing scrolls
    assert set(numbers) == {"nowrap"}  # its texts and names wrap, never a number ("0.272" printed as "0. 2 7 2")
    assert charts == "block"  # one chart per row: side by side, the paper's column cut them
    assert kept == ["exact"] * 3
    assert pdf.stat().st_size > 10_000
    assert max(after) > 681  # fitted to the screen's boxes again


def test_without_javascript_the_charts_say_why_they_are_empty(browser, report_index):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(report_index.as_uri())
    notes = page.locator(".npeff-plot").evaluate_all("els => els.map(e => e.innerText)")
    shaded = page.locator(".npeff .tok").count()
    context.close()
    assert notes and all("JavaScript is off" in note for note in notes), notes[:3]
    assert shaded > 10  # the reading itself needs no script


def test_a_screen_reader_hears_a_named_table_whose_headers_sort(browser, tmp_path):
    """A screen reader heard an unnamed table of plain headers (the caption's "click a header to sort" aside) until
    a sort put aria-sort on one: the table is named by its heading, each header holds a button, from the keyboard
    too, with its focus ring, and the arrow drawn beside the sorted header is not read out."""
    frame = pd.DataFrame({"mass": [0.3, 0.5, 0.1], "g_norm": [1.0, 2.0, 3.0]}, index=pd.Index([0, 1, 2], name="component"))
    path = tmp_path / "table.html"
    path.write_text(report.html_page("table", '<h2 id="components">Components</h2>'
                                     + report.table_html(frame, sortable=True, labelled_by="components")), encoding="utf-8")
    page = open_page(browser, path)
    table = page.get_by_role("table", name="Components")
    before = table.aria_snapshot()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    focused = page.evaluate("[document.activeElement.textContent, getComputedStyle(document.activeElement).outlineStyle]")
    page.keyboard.press(" ")
    after = table.aria_snapshot()
    cells = "Array.from(document.querySelectorAll('tbody tr td:nth-child(2)')).map(c => c.textContent)"
    ascending, scroll = page.evaluate(cells), page.evaluate("window.scrollY")
    page.keyboard.press("Enter")
    descending = page.evaluate(cells)
    sorts = page.evaluate("Array.from(document.querySelectorAll('th[aria-sort]')).map(h => [h.textContent, h.getAttribute('aria-sort')])")
    page.close()
    for name in ("component", "mass", "g_norm"):
        assert f'- columnheader "{name}":\n        - button "{name}"' in before, before
    headers = before.split("- rowgroup:")[1]  # the arrow is for the eye: aria-sort tells the reader
    assert after.split("- rowgroup:")[1] == headers and "▲" not in after
    assert focused == ["mass", "solid"]
    assert ascending == ["0.1", "0.3", "0.5"] and descending == ["0.5", "0.3", "0.1"] and scroll == 0
    assert sorts == [["mass", "descending"]]


#: The pages a panel is seen on: (the body's attributes, the system's scheme, whether the panel is dark).
#: JupyterLab's theme sets data-jp-theme-light on its body; nbconvert's page sets it too, light, on a
#: body.jp-Notebook, where the system's scheme decides as on any other page.
PANEL_PAGES = {
    "a page, system dark": ("", "dark", True),
    "a page, system light": ("", "light", False),
    "JupyterLab dark theme, system light": ('data-jp-theme-light="false"', "light", True),
    "JupyterLab light theme, system dark": ('data-jp-theme-light="true"', "dark", False),
    "nbconvert's page, system dark": ('class="jp-Notebook" data-jp-theme-light="true"', "dark", True),
    "nbconvert's page, system light": ('class="jp-Notebook" data-jp-theme-light="true"', "light", False),
}


def panel_page(tmp_path, figure, body: str = "") -> Path:
    """A panel's chart as JupyterLab's plotly renderer draws it (plotly.js, the version the renderer bundles, into a
    .jp-RenderedPlotly node inside the Output widget's classes), below a table of the panel's, on a page whose body
    has the attributes ``body``."""
    from plotly.offline import get_plotlyjs

    from widgets.chart import Chart, display_data

    chart = Chart(figure, width=600)
    spec = json.dumps(display_data(chart.figure)["data"]["application/vnd.plotly.v1+json"])
    table = report.fragment(report.table_html(pd.DataFrame({"mass": [0.5]})))
    path = tmp_path / "panel.html"
    path.write_text(f'<html><head><script>{get_plotlyjs()}</script></head><body {body}>{table}'
                    f'<div class="{" ".join(chart._dom_classes)}"><div class="jp-RenderedPlotly" id="chart"></div></div>'
                    f"<script>var s = {spec}; s.layout.height = 360;"
                    " Plotly.react(document.getElementById('chart'), s.data, s.layout, s.config);</script></body></html>",
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("where", PANEL_PAGES)
def test_a_panels_live_chart_and_tables_follow_jupyterlabs_theme_or_elsewhere_the_systems_scheme(browser, tmp_path,
                                                                                                 where):
    """JupyterLab's plotly renderer drew the panels' charts with plotly's white template: white boxes beside the
    panel's dark tables. Then chart and tables followed the system's scheme, not JupyterLab's theme: dark panels in
    a light JupyterLab, light ones in a dark JupyterLab. Inside JupyterLab its theme decides; on nbconvert's page,
    as on any other, the system's scheme."""
    body, scheme, expected = PANEL_PAGES[where]
    frame = pd.DataFrame(np.full((3, 2), 1 / 6), index=["embeddings", "layer 0", "head"], columns=["MLP in", "LayerNorm"])
    page = open_page(browser, panel_page(tmp_path, report.location_figure(frame), body), color_scheme=scheme)
    page.wait_for_selector("#chart .main-svg")
    paper = page.evaluate("getComputedStyle(document.querySelector('#chart .svg-container')).backgroundColor")
    under = page.evaluate("getComputedStyle(document.querySelector('#chart').parentElement).backgroundColor")
    shown = page.evaluate("getComputedStyle(document.querySelector('#chart .main-svg')).backgroundColor")
    title = page.evaluate("getComputedStyle(document.querySelector('#chart .gtitle')).fill")
    header = page.evaluate("getComputedStyle(document.querySelector('.npeff th')).backgroundColor")
    page.close()
    paper = over(shown, over(paper, rgba(under)))
    assert (sum(paper) < 3 * 80) == expected, (where, paper)
    assert (sum(rgba(header)[:3]) < 3 * 80) == expected, (where, header)
    assert contrast(rgba(title), paper) >= 4.5, (title, paper)


def test_the_live_charts_dark_colours_name_classes_plotly_still_draws(browser, tmp_path):
    """The dark colours of a panel's live chart are laid over plotly's template by the classes of plotly's SVG, which
    are no API of plotly's: a plotly that renames one would leave that part white in a dark JupyterLab, without
    a word. Every class the rules name is looked for in what plotly.js draws: bars, a legend, a zero line."""
    from workbench.report.css import LIVE_CHART

    frame = pd.DataFrame([[0.3, -0.2], [-0.1, 0.4]], index=["0 (negative)", "1 (positive)"], columns=["+", "-"])
    page = open_page(browser, panel_page(tmp_path, report.logit_figure(frame, 0.1), 'data-jp-theme-light="false"'))
    page.wait_for_selector("#chart .main-svg")
    classes = sorted({name for selector, _ in LIVE_CHART for name in re.findall(r"\.([\w-]+)", selector)} - {"npeff"})
    missing = page.evaluate("names => names.filter(n => !document.getElementsByClassName(n).length)", classes)
    painted = page.evaluate(f"{json.dumps([s for s, _ in LIVE_CHART])}.filter(s => !document.querySelector(s))")
    page.close()
    assert len(classes) >= 8, classes
    assert not missing, f"plotly.js no longer draws the classes {missing} that report.css's LIVE_CHART rules name"
    assert not painted, f"report.css's LIVE_CHART rules {painted} find nothing in plotly.js's chart"


def test_missing_values_sort_last_either_way(browser, tmp_path):
    frame = pd.DataFrame({"score": [3.0, np.nan, 1.0, 4.0, np.inf, np.nan, 2.0]})
    path = tmp_path / "table.html"
    path.write_text(report.html_page("table", report.table_html(frame, sortable=True)), encoding="utf-8")
    page = open_page(browser, path)
    header = page.locator("th", has_text="score")
    cells = "Array.from(document.querySelectorAll('tbody tr td:nth-child(2)')).map(c => c.textContent)"
    header.click()
    ascending = page.evaluate(cells)
    header.click()
    descending = page.evaluate(cells)
    page.close()
    assert ascending == ["1", "2", "3", "4", "inf", "", ""]
    assert descending == ["inf", "4", "3", "2", "1", "", ""]


def test_the_location_legend_shows_every_kind_beside_turned_layer_names(browser, tmp_path):
    """MiniLM's six layers turned their names below the bars, which took height the chart's size did not count:
    the legend scrolled, hiding "embeddings" at 1280 px and three kinds at 360 px."""
    kinds = ["embeddings", "attention q", "attention k", "attention v", "attention o", "MLP in", "MLP out", "LayerNorm"]
    layers = ["embeddings", *(f"layer {i}" for i in range(6)), "head"]
    location = pd.DataFrame(np.full((len(layers), len(kinds)), 1 / (len(layers) * len(kinds))), index=layers, columns=kinds)
    path = tmp_path / "location.html"
    path.write_text(report.html_page("location", report.figure_html(report.location_figure(location), True)),
                    encoding="utf-8")
    for width in (360, 1280):
        page = open_page(browser, path, width=width)
        page.wait_for_selector("g.legend g.traces")
        hidden = page.evaluate("""() => { const legend = document.querySelector('g.legend rect.bg').getBoundingClientRect();
            return Array.from(document.querySelectorAll('g.legend g.traces')).filter(item => {
              const r = item.getBoundingClientRect(); return r.bottom > legend.bottom + 1 || r.top < legend.top - 1; }).length; }""")
        page.close()
        assert hidden == 0, width


def small_strategy_results():
    """An over-training result (both strategies, recorded accuracy too) and a model diff, of a few rows each."""
    from workbench.analysis.model_diff import ModelDiff
    from workbench.analysis.over_training import OverTraining

    steps = [0, 100]
    components = pd.DataFrame([dict(step=s, component=j, strategy=kind, mass=0.5, kl_ratio=2.0 + j, purity=0.9,
                                    cos=0.8, partner=j) for s in steps for j in (0, 1) for kind in ("transform", "match")])
    accuracy = pd.DataFrame([dict(step=s, group=g, accuracy=0.7, source=source) for s in steps
                             for g in ("lexical", "marker") for source in ("analysed", "recorded")])
    reference = pd.DataFrame({"strategy": ["lexical", "marker"], "mass": [0.6, 0.4]}, index=pd.Index([0, 1], name="component"))
    diff = ModelDiff(
        components=pd.DataFrame({"component_a": [0, -1], "component_b": [0, 1], "strategy_a": ["lexical", ""],
                                 "strategy_b": ["lexical", "marker"], "status": ["kept", "gained"],
                                 "mass_a": [0.5, 0.0], "mass_b": [0.4, 0.3]}),
        strategies=pd.DataFrame({"named_a": [True, False], "named_b": [True, True], "status": ["kept", "gained"]},
                                index=pd.Index(["lexical", "marker"], name="strategy")),
        quality={"n_matched": 1, "mean_cos": 0.9, "n_unmatched_a": 0, "n_unmatched_b": 1}, names=("A", "B"))
    return OverTraining(components, accuracy, reference, steps), diff


#: The ids a page repeats, and how many tables it has (its folds opened).
TABLE_NAMES = """() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });  // folded tables are read once unfolded
  const ids = Array.from(document.querySelectorAll('[id]'), e => e.id);
  return {repeated: ids.filter((id, k) => ids.indexOf(id) !== k), tables: document.querySelectorAll('table').length};
}"""


def test_a_screen_reader_finds_every_table_of_a_report_by_its_name(browser, report_index, notebook_page, explorer,
                                                                   tmp_path):
    """Only the report's component table had a name: a screen reader's list of tables read the dashboards', the
    traces' and the strategy pages' tables as "table", dozens of them, and a notebook's component table too. Each
    is named by its heading, whose id is unique on the page (the same headings repeat once per component)."""
    over_training, diff = small_strategy_results()
    sections = report.export_sections([over_training, diff, explorer.trace(0, n_top=3, n_baseline=3)],
                                      tmp_path / "sections.html")
    seen = set()
    for path in (report_index, sections, notebook_page):
        page = open_page(browser, path)
        found = page.evaluate(TABLE_NAMES)
        tree = page.context.new_cdp_session(page).send("Accessibility.getFullAXTree")["nodes"]
        page.close()
        names = [node.get("name", {}).get("value", "") for node in tree
                 if node.get("role", {}).get("value") == "table" and not node.get("ignored")]
        assert not found["repeated"], (path.name, found["repeated"][:5])
        assert len(names) == found["tables"] > (0 if path == notebook_page else 5), (path.name, len(names), found["tables"])
        assert all(names), (path.name, names.count(""), names[:20])
        seen.update(names)
    assert {"Components", "Top tokens", "Nearest components", "Coefficient histogram", "component 0 in the component table",
            "Reference components", "Strategies"} <= seen, sorted(seen)
    assert any(re.fullmatch(r"Perturbation trace of component \d+ Example \d+", n) for n in seen), sorted(seen)


#: The words of ``selector``'s elements that a line break cuts (a name's parts between underscores count as words).
WORDS_CUT = """(selector) => {
  const cut = [];
  for (const element of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const word of node.textContent.matchAll(/[^\\s_]+/g)) {
        const lines = new Set();
        for (let i = word.index; i < word.index + word[0].length; i++) {
          const range = document.createRange(); range.setStart(node, i); range.setEnd(node, i + 1);
          const box = range.getClientRects()[0]; if (box && box.width) lines.add(Math.round(box.top));
        }
        if (lines.size > 1) cut.push([element.tagName, element.textContent.slice(0, 40), word[0]]);
      }
    }
  }
  return cut;
}"""
HEADINGS = ".npeff th, .npeff h1, .npeff h2, .npeff h3, .npeff h4, .npeff b, .npeff summary"


def test_printed_headers_wrap_between_words_and_the_tables_fit_the_paper(browser, report_index, notebook_page):
    """On paper the tables' headers wrapped anywhere, to fit the page: "component" printed as "co / mpo / nent",
    "strategy_entropy" as "strat / egy_en / tropy". A header wraps between words, a name after its underscores."""
    for path in (report_index, notebook_page):
        page = open_page(browser, path, width=718)  # an A4 page's width, at its default margins
        page.evaluate("window.dispatchEvent(new Event('beforeprint'))")
        page.emulate_media(media="print")
        cut = page.evaluate(WORDS_CUT, HEADINGS)
        widths = page.evaluate("[document.documentElement.clientWidth, "
                               "Math.max(...Array.from(document.querySelectorAll('.npeff table'), t => t.getBoundingClientRect().right))]")
        page.close()
        assert not cut, (path.name, len(cut), cut[:10])
        if path == report_index:  # and its widest table still fits the paper (the notebook's has its prompts beside)
            assert widths[1] <= widths[0], widths


#: How far the end of the code cell's longest line lies past its cell's right edge, once scrolled to it.
CODE_PAST_EDGE = """() => {
  const pre = document.querySelector('.jp-InputArea-editor pre');
  for (let e = pre; e && e !== document.body; e = e.parentElement)  // as a reader scrolls: a box that clips is no scroller
    if (['auto', 'scroll'].includes(getComputedStyle(e).overflowX)) e.scrollLeft = 1e6;
  const text = [...pre.querySelectorAll('span')].pop();
  const range = document.createRange(); range.selectNodeContents(text);
  return range.getBoundingClientRect().right - document.querySelector('.jp-InputArea-editor').getBoundingClientRect().right;
}"""


@pytest.mark.parametrize("view", [{"width": 375}, {"width": 640, "device_scale_factor": 2}, {"media": "print"}],
                         ids=["phone", "zoomed to 200%", "paper"])
def test_a_notebooks_long_code_line_is_read_whole(browser, tmp_path, view):
    """The notebook's HTML cut each code line at its cell's edge, with no way to scroll to the rest: on a phone, at
    200% zoom, on paper and on any screen for a long line. It scrolls in its cell, and wraps on paper."""
    from workbench.app.notebook import export_notebook_html

    executed = tmp_path / "long.ipynb"
    line = "checks = {j: explorer.perturb(j, epsilon=epsilon, baseline_draw='same classes') for j in range(16)}  # end"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(line)]), executed)
    html = export_notebook_html(executed, tmp_path / "long.html")
    media = view.pop("media", None)
    page = browser.new_page(viewport={"width": view.pop("width", 718), "height": 800}, **view)
    page.goto(html.as_uri())
    if media:
        page.emulate_media(media=media)
    past = page.evaluate(CODE_PAST_EDGE)
    width, client = page.evaluate("[document.scrollingElement.scrollWidth, document.scrollingElement.clientWidth]")
    page.close()
    assert past <= 1, past
    assert width <= client, (width, client)  # in its cell: the page itself does not scroll sideways
