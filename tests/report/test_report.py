"""Static HTML: escaping, charts that carry the result's numbers, the run section, report folders."""

import os
import re
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import HOSTILE_TEXTS
from workbench import report
from workbench.report import pages
from workbench.report.charts import TITLE_LINE, with_title
from workbench.app.explore import RunExplorer


@pytest.fixture(scope="module")
def hostile(hostile_run):
    return RunExplorer.open(hostile_run.path)


@pytest.fixture(scope="module")
def perturbation(hostile):
    return hostile.perturb(1, epsilon=0.1, n_baseline=40)


def assert_inert(html: str) -> None:
    """None of the hostile texts' markup survives as markup (plotly.js itself aside)."""
    from plotly.offline import get_plotlyjs

    html = html.replace(get_plotlyjs(), "")
    assert "<script>window.__npeffInjected" not in html
    assert "<img src=x" not in html
    assert not re.search(r"""onerror=\\?["']""", html)  # an attribute needs a raw quote; entities are text


def test_example_text_is_shown_as_text(hostile):
    page = hostile.top_examples(1, page_size=3)
    assert page.examples[0].text in HOSTILE_TEXTS
    html = report.examples_page_html(page)
    assert_inert(html)
    shown = unescape(re.sub(r"<[^>]+>", "", html))  # the page's text, as a reader sees it
    assert page.examples[0].text in shown  # the markup of the text is text, its words shaded one by one
    assert len(re.findall('class="tok ', html)) > 5  # the words are still highlighted
    # The same with the tokenizer's tokens instead of character spans.
    for e in page.examples:
        e.spans = None
    assert_inert(report.examples_page_html(page))


def test_tables_and_run_section_escape_everything():
    frame = pd.DataFrame({"strategy": ["<b>bold</b>"], "x": [0.123456]}, index=pd.Index([3], name="<i>c</i>"))
    html = report.table_html(frame, index_links={3: 'x" onclick="alert(1)'})
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html and "0.123" in html
    assert 'onclick="alert' not in html
    record = {"status": "complete", "params": {"out": "<script>x</script>"},
              "notebooks": {"quickstart": {"parameters": {"n_components": 4, "seed": 0}, "injected": ["n_components"]}}}
    section = report.run_section_html(record)
    assert "<script>x" not in section and "&lt;script&gt;x" in section
    assert "n_components*</b> 4" in section and "seed</b> 0" in section


def test_perturbation_charts_carry_the_results_numbers(perturbation):
    kl = report.kl_figure(perturbation)
    top, baseline = kl.data
    assert list(top.y) == [perturbation.kl_top["+"], perturbation.kl_top["-"]]
    assert list(baseline.y) == [perturbation.kl_baseline["+"], perturbation.kl_baseline["-"]]
    accuracy = report.accuracy_figure(perturbation, signs=("-",))
    assert list(accuracy.data[0].y) == [perturbation.accuracy_top["original"], perturbation.accuracy_top["-"]]
    html = perturbation._repr_html_()
    assert "KL ratio top/baseline" in html and 'class="npeff-plot"' in html
    assert "plotly.js v" not in html  # a notebook output does not carry plotly.js


def test_single_page_report_has_everything_offline(hostile, perturbation, tmp_path):
    index = report.export_html(hostile, tmp_path / "report", perturbations=[perturbation], n_examples=3, progress=False)
    html = index.read_text()
    assert_inert(html)
    assert html.count('<section id="component-') == hostile.n_components
    assert all(f'href="#component-{j}"' in html for j in range(hostile.n_components))
    assert "plotly.js v" in html and not re.search(r'src="https?://', html)
    assert "This run" in html and "Perturbation of component 1" in html
    assert [p.name for p in (tmp_path / "report").iterdir()] == ["index.html"]


def test_report_splits_into_linked_pages_above_the_limit(hostile, perturbation, tmp_path):
    out = tmp_path / "report"
    (out / "components").mkdir(parents=True)
    (out / "components" / "99999.html").write_text("from an older report")
    index = report.export_html(hostile, out, perturbations=[perturbation], n_examples=2, max_single_page=10,
                               highlight=False, progress=False)
    pages = sorted((out / "components").iterdir())
    assert len(pages) == hostile.n_components
    html = index.read_text()
    assert all(f'href="components/{j:05d}.html"' in html for j in range(hostile.n_components))
    assert not (out / "components" / "99999.html").exists() and (out / report.PLOTLY_FILE).exists()
    page = (out / "components" / "00001.html").read_text()
    assert '<script src="../plotly.min.js">' in page and "Perturbation of component 1" in page
    assert 'href="../index.html#component-1"' in page and '<tr id="component-1">' in html  # back to its row
    assert_inert(page)
    assert not list(tmp_path.glob(".report.*"))  # no staging folder left behind
    # no heading level skipped (a component page went from its h1 to its sections' h3), also on a page of sections
    sections = report.export_sections([hostile.trace(1, n_top=3, n_baseline=3)], tmp_path / "sections.html")
    for text in (page, sections.read_text()):
        levels = [int(n) for n in re.findall(r"<h([1-6])[ >]", text)]
        assert levels[0] == 1 and all(b <= a + 1 for a, b in zip(levels, levels[1:])), levels


def test_a_report_of_many_charts_splits_into_pages_by_default(hostile, perturbation, tmp_path, monkeypatch):
    """A browser draws every chart of a page as it opens: 320 charts took 48 s. The default split counts them."""
    common = dict(perturbations=[perturbation], n_examples=2, highlight=False, progress=False, dashboards=False)
    index = report.export_html(hostile, tmp_path / "one", **common)
    n_charts = index.read_text().count('class="npeff-plot"')
    assert n_charts > 0 and not (tmp_path / "one" / "components").exists()
    monkeypatch.setattr(pages, "MAX_SINGLE_PAGE_CHARTS", n_charts - 1)
    report.export_html(hostile, tmp_path / "split", **common)
    assert len(list((tmp_path / "split" / "components").iterdir())) == hostile.n_components
    report.export_html(hostile, tmp_path / "asked", max_single_page=hostile.n_components, **common)
    assert not (tmp_path / "asked" / "components").exists()  # a limit given is the components' alone


def test_what_killed_exports_left_is_cleared_and_a_report_moved_aside_comes_back(hostile, tmp_path):
    import subprocess
    import sys

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    out = tmp_path / "report"
    report.export_html(hostile, out, n_examples=1, highlight=False, dashboards=False, traces=False, progress=False)
    # an export killed between its two renames: the previous report aside, none in place; another killed while writing
    aside = tmp_path / f".report.old-{dead}-0123abcd"
    out.rename(aside)
    (tmp_path / f".report.tmp-{dead}-4567ef01").mkdir()
    live = tmp_path / f".report.tmp-{os.getpid()}-89ab0123"  # an export still at work keeps its folder
    live.mkdir()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pages, "_component_section", killed)
        with pytest.raises(KeyboardInterrupt):
            report.export_html(hostile, out, n_examples=1, highlight=False, dashboards=False, traces=False,
                               progress=False)
    assert (out / "index.html").is_file()  # the previous report, back in place
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "report"])


def test_a_page_of_sections_killed_while_written_leaves_nothing_that_blocks_a_report(hostile, tmp_path):
    """export_sections wrote its 5 MB page under a random name: a killed write left it for ever, and the folder was
    then "not a report's" to export_html."""
    import subprocess
    import sys

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    out = tmp_path / "report"
    report.export_sections([], out / "index.html")
    (out / f".index.html.tmp-{dead}-0123abcd").write_text("half a page")
    report.export_html(hostile, out, n_examples=1, highlight=False, dashboards=False, traces=False, progress=False)
    (out / f".index.html.tmp-{dead}-4567ef01").write_text("half a page")
    report.export_sections([], out / "index.html")
    assert not list(out.glob(".index.html.tmp-*"))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:  # interrupted once the page is written, before it is moved in
        patch.setattr(os, "replace", killed)
        with pytest.raises(KeyboardInterrupt):
            report.export_sections([], out / "index.html")
    assert not list(out.glob(".index.html.tmp-*"))


def test_a_full_disk_while_a_report_is_written_names_the_report_and_keeps_the_previous_one(hostile, tmp_path):
    """export_html and export_sections on a full disk raised a bare 'OSError: [Errno 28] No space left on device',
    which named neither the report nor what to do."""
    import errno
    from pathlib import Path

    out = tmp_path / "report"
    report.export_html(hostile, out, n_examples=1, highlight=False, dashboards=False, traces=False, progress=False)
    before = (out / "index.html").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "write_text", full)
        with pytest.raises(OSError, match=f"could not write {re.escape(str(out))}: No space left on device. Free "
                                          "space on that disk") as raised:
            report.export_html(hostile, out, n_examples=1, highlight=False, dashboards=False, traces=False,
                               progress=False)
        assert raised.value.errno == errno.ENOSPC
        with pytest.raises(OSError, match=f"could not write {re.escape(str(tmp_path / 'page.html'))}: No space"):
            report.export_sections([], tmp_path / "page.html")
    assert (out / "index.html").read_bytes() == before  # the previous report, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # nothing half-written beside it


def test_a_run_folder_s_path_is_not_an_explorer(hostile_run, tmp_path):
    with pytest.raises(TypeError, match=r"export_html takes a RunExplorer, got the path .*RunExplorer\.open\(path\)"):
        report.export_html(str(hostile_run.path), tmp_path / "report")
    with pytest.raises(TypeError, match=r"export_html takes a RunExplorer, got NoneType"):
        report.export_html(None, tmp_path / "report")
    with pytest.raises(TypeError, match=r"perturbations must hold results of RunExplorer\.perturb"):
        report.export_html(RunExplorer.open(hostile_run.path), tmp_path / "report", perturbations=[1])
    assert not (tmp_path / "report").exists()


def test_token_colours_scale_with_the_score():
    assert report.token_colour(0.5, 0.5) == "rgba(var(--carries, 255,140,0),0.80)"
    assert report.token_colour(-0.25, 0.5) == "rgba(var(--cancels, 40,120,255),0.40)"
    assert report.token_colour(0.0, 0.0).endswith("0.00)")
    assert report.format_value(np.float32(0.123456)) == "0.123" and report.format_value(float("nan")) == ""


def test_bidirectional_controls_are_shown_not_applied():
    """A right-to-left override in the data would reverse the rest of its line on the page (the
    text after it, the next columns): it is shown as a mark instead, in HTML and in chart labels."""
    spoof = "terrible \u202e. this time"
    assert report.escape(spoof) == "terrible ⟨U+202E⟩. this time"
    assert report.plotly_text("\u2067<b>x</b>") == "⟨U+2067⟩&lt;b&gt;x&lt;/b&gt;"
    page = report.html_page(spoof, report.table_html(pd.DataFrame({"text": [spoof]})))
    assert "\u202e" not in page and page.count("⟨U+202E⟩") == 2
    assert report.escape("\u05e9\u05dc\u05d5\u05dd") == "\u05e9\u05dc\u05d5\u05dd"  # right-to-left text itself is kept


def test_right_to_left_texts_keep_the_numbers_around_them_in_place(hostile):
    """Without isolation, a Hebrew or Arabic text or label name took the neutral characters beside
    it into its direction: "label שלום · prediction 1" read with its parts swapped, and a table
    row's text cell pulled the next number to its left."""
    hebrew = "\u05e9\u05dc\u05d5\u05dd"
    table = report.table_html(pd.DataFrame({"label": [hebrew], "share": [0.5]}, index=pd.Index(["a"], name="word")))
    assert table.count('dir="auto"') == 2 and '<td class="text" dir="auto">' + hebrew in table
    page = hostile.top_examples(1, page_size=1)
    card = report.example_html(page.examples[0], lambda label: hebrew)
    assert f"label <bdi>{hebrew}</bdi>" in card and f"<bdi>{hebrew}</bdi>" in card.split("prediction", 1)[1]
    card = report.example_html(page.examples[0], lambda label: f"{label} ({hebrew})")  # the number stays before the name
    assert f"label {page.examples[0].label} (<bdi>{hebrew}</bdi>)" in card
    assert "strongest word <b><bdi>" in card and '<div class="tokens" dir="auto">' in card


def test_chart_labels_from_the_data_are_not_read_as_plotly_markup():
    """Plotly draws <b>, <br> and <a href> in its labels: class names, component names and tokens
    from the data are shown as written."""
    classes = pd.DataFrame({"+": [0.1, -0.2], "-": [0.0, 0.3]},
                           index=['<a href="https://example.com">pos</a>', "<b>neg</b>"])
    figure = report.logit_figure(classes, 0.1)
    labels = [label for trace in figure.data for label in trace.x]
    assert labels and all("<" not in label for label in labels)
    assert '&lt;a href=&#34;https://example.com&#34;&gt;pos&lt;/a&gt;' in labels  # plotly.js shows the characters


def test_chart_titles_are_escaped_and_wrapped_and_log_axes_read_in_powers_of_ten(perturbation):
    """plotly never wraps a title (long ones ran past a phone's chart), and its SI prefixes wrote a
    KL of 1e-10 as "100p"."""
    figure = with_title(report.kl_figure(), 'a <b>"label"</b> of the data, long enough to need two lines, ε = 0.1')
    lines = figure.layout.title.text.split("<br>")
    assert len(lines) == 2 and all(len(unescape(line)) <= TITLE_LINE for line in lines), lines
    assert "<b>" not in figure.layout.title.text and "ε\u00a0=\u00a00.1" in lines[-1]  # escaped, "a = b" kept whole
    assert figure.layout.margin.t >= 22 + 18 * 2
    for log_figure in (report.kl_figure(perturbation), report.sweep_figure(pd.DataFrame(
            {"set": ["top"], "sign": ["+"], "epsilon": [0.1], "kl": [1e-10]}))):
        assert log_figure.layout.yaxis.type == "log" and log_figure.layout.yaxis.exponentformat == "power"


def test_kl_ticks_within_two_decades_read_as_their_whole_values():
    """plotly's dtick "D2" labelled a KL of 0.5 as "5", drawn below the "1" of 1 (KLs of 0.48 to 0.99)."""
    from workbench.analysis.perturb import PerturbationResult
    from workbench.report.charts import log_ticks

    result = PerturbationResult(3, 0.1, None, 20, 100, {"+": 0.99, "-": 0.7}, {"+": 0.48, "-": 0.6}, {}, {})
    axis = report.kl_figure(result).layout.yaxis
    assert list(axis.ticktext) == ["0.2", "0.5", "1", "2"] and list(axis.tickvals) == [0.2, 0.5, 1.0, 2.0]
    assert log_ticks(2e-6, 5e-5)["ticktext"][:3] == ["10⁻⁶", "2×10⁻⁶", "5×10⁻⁶"]


def test_long_tick_labels_are_cut_and_kept_whole_in_the_hover():
    """Ten class names of 120 characters pushed the bars out of their chart; the hover keeps the whole name."""
    from workbench.report.charts import TICK_LABEL

    long_name = "x" * 120
    figure = report.logit_figure(pd.DataFrame({"+": [0.1, -0.2], "-": [0.0, 0.3]}, index=[long_name, "<b>neg</b>"]), 0.1)
    assert list(figure.data[0].x) == [long_name, "&lt;b&gt;neg&lt;/b&gt;"]
    assert figure.layout.xaxis.ticktext == ("x" * (TICK_LABEL - 1) + "…", "&lt;b&gt;neg&lt;/b&gt;")
    assert list(figure.layout.xaxis.tickvals) == list(figure.data[0].x)


def test_pages_fit_small_screens_and_dark_themes():
    page = report.html_page("t", "<p>x</p>")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    # the page's own colours on a background of its own: readable inside a dark JupyterLab theme;
    # light unless the system asks for dark (the colours are variables, set again for dark)
    assert "--bg: #fff;" in report.CSS and "background: var(--bg)" in report.CSS
    dark = report.CSS.split("@media screen and (prefers-color-scheme: dark)")[1].split("\n}")[0]
    assert "color-scheme: dark" in dark and "--bg: #1b1d21" in dark and "--fg: #e4e4e4" in dark
    assert '<meta name="color-scheme" content="light dark">' in page
    assert "mathjax_ignore" in report.fragment("$a^2$")  # JupyterLab does not typeset the data's dollars


def test_each_card_names_and_underlines_its_strongest_word(hostile):
    page = hostile.top_examples(1, page_size=3)
    for e in page.examples:
        card = report.example_html(e, page.label_name)
        assert e.strongest_positions
        assert card.count(' strongest"') == len(e.strongest_positions)
        assert f"{e.strongest_share:+.0%} of the words' share" in card
        assert f"strongest word: {e.strongest_token!r} ({e.strongest_share:+.0%}" in repr(page)


def test_a_report_never_replaces_a_folder_that_is_not_a_report(hostile, tmp_path):
    """A report replaces its folder whole: a run folder, or any folder of the user's, is refused."""
    with pytest.raises(FileExistsError, match="not a report's"):
        report.export_html(hostile, hostile.run.path, n_examples=1, highlight=False, dashboards=False, progress=False)
    assert (hostile.run.path / "run.json").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("months of work")
    with pytest.raises(FileExistsError, match="thesis.tex"):
        report.export_html(hostile, mine, n_examples=1, highlight=False, dashboards=False, progress=False)
    assert (mine / "thesis.tex").read_text() == "months of work"


def test_pieces_of_one_character_show_it_once():
    """Byte-level BPE splits 'é' into two tokens with the same span: the text shows it once."""
    import html as html_module

    page = report.highlighted_text_html("café!", ["ca", "f", "Ã", "©", "!"], [0.1, 0.2, 0.3, 0.4, 0.0],
                                        spans=[(0, 2), (2, 3), (3, 4), (3, 4), (4, 5)])
    assert html_module.unescape(re.sub(r"<[^>]+>", "", page)) == "café!"


def test_the_words_that_carry_the_component_are_marked():
    """A screen reader read a highlighted example as plain text: the shading told it nothing. The deeply shaded words
    that carry the component are in <mark>, one per run of them; the faint ones and those that cancel it are not."""
    text = "an unbelievably bad film , truly awful"
    words = text.split(" ")
    spans, start = [], 0
    for word in words:
        spans.append((start, start + len(word)))
        start += len(word) + 1
    page = report.highlighted_text_html(text, words, [0.02, 0.3, 0.35, 0.4, 0.01, 0.05, -0.4], spans=spans)
    marked = [re.sub(r"<[^>]+>", "", m) for m in re.findall(r"<mark>(.*?)</mark>", page)]
    assert marked == ["unbelievably bad film"]  # one run, not "highlighted" around each word
    assert re.sub(r"</?mark>", "", page).count("<span") == len(words)  # each word keeps its shade and tooltip
    tokens_only = report.highlighted_text_html(text, words, [0.02, 0.3, 0.35, 0.4, 0.01, 0.05, -0.4])
    assert [re.sub(r"<[^>]+>", "", m) for m in re.findall(r"<mark>(.*?)</mark>", tokens_only)] == marked
    assert "<mark>" not in report.highlighted_text_html("a b", ["a", "b"], [0.0, 0.0], spans=[(0, 1), (2, 3)])


def test_the_part_of_a_text_the_model_did_not_read_is_marked_and_cut_short():
    """A text cut at max_length showed its unread tail as if read: a card of 10,235 characters, 309 of them scored."""
    import html as html_module

    text = "good film . " + "and more words " * 100
    page = report.highlighted_text_html(text, ["good", "film", "."], [0.5, 0.3, 0.2], spans=[(0, 4), (5, 9), (10, 11)])
    unread = page.split('class="unread"', 1)[1]
    assert "the model read no further" in unread and f"{len(text) - 11 - report.html.UNREAD_SHOWN:,} more characters" in unread
    assert len(html_module.unescape(re.sub(r"<[^>]+>", "", page))) < 12 + report.html.UNREAD_SHOWN + 100
    read_whole = report.highlighted_text_html("good film . \u200b\r\n", ["good", "film", "."], [0.5, 0.3, 0.2],
                                              spans=[(0, 4), (5, 9), (10, 11)])
    assert "unread" not in read_whole and read_whole.endswith(".</span> \u200b\r\n</div>")
    # what a tokenizer drops from every token is no cut: an accent typed apart, an emoji's variation selector
    for text in ("the cafe\u0301", "loved it \u2764\ufe0f", "great movie \ufffd"):
        stop = len(text.rstrip("\u0301\ufe0f\ufffd ").rstrip("\u2764 "))
        assert "unread" not in report.highlighted_text_html(text, ["x"], [1.0], spans=[(0, stop)])
    # a model read through a prompt cuts a long text at its start: the words before its first token
    cut_at_start = report.highlighted_text_html("never read . " * 30 + "good film", ["good", "film"], [0.6, 0.4],
                                                spans=[(390, 394), (395, 399)])
    head = cut_at_start.split('class="unread"', 1)[1].split("</span>", 1)[0]
    assert "190 characters before" in head and head.endswith("✂ the model read from here</b> ")


def test_charts_take_the_width_of_their_box():
    """A chart has no width of its own: plotly sizes it to its box, and again whenever the box
    changes (a chart drawn while the page loads is later squeezed beside its neighbours)."""
    figure = report.kl_figure().update_layout(width=900)
    for include in (False, True):
        html = report.figure_html(figure, include_plotlyjs="cdn" if include else False)
        assert '"autosize":true' in html and '"width":900' not in html
        assert "new ResizeObserver" in html and "Plotly.Plots.resize(div)" in html
        assert '"responsive": true' in html or '"responsive":true' in html
    assert figure.layout.width == 900  # the caller's figure is not changed


#: The record of a run that the quickstart notebook made, as it is while the notebook writes its
#: report: the pipeline's stages done, the notebook's own entry (and so the run) still running.
QUICKSTART_RECORD = {
    "status": "running", "started": "2026-01-01T10:00:00+00:00", "finished": "2026-01-01T10:00:40+00:00",
    "stages": {"model": {"status": "done", "seconds": 15.4}, "fit": {"status": "done", "seconds": 4.8}},
    "notebooks": {"quickstart": {"source": "notebooks/quickstart.ipynb", "status": "running", "papermill": "2.7.0",
                                 "parameters": {"seed": 0}, "injected": []}},
}


def test_a_report_written_by_its_notebook_does_not_say_running_for_ever():
    section = report.run_section_html(QUICKSTART_RECORD)
    assert "<b>running</b>" not in section and "running in ? s" not in section
    assert "<b>pipeline complete</b> (all 2 stages done; notebook quickstart was still running when this was written)" \
        in section
    assert "still running when this was written, papermill 2.7.0" in section and "in 40 s" in section
    assert "status pipeline complete" in report.run_section_text(QUICKSTART_RECORD)
    # a stage still running (or stopped there) keeps the run "running", and says which
    stopped = dict(QUICKSTART_RECORD, stages={"model": {"status": "done", "seconds": 15.4},
                                              "fit": {"status": "running"}})
    section = report.run_section_html(stopped)
    assert "<b>running</b>" in section and "<b>fit</b> running" in section and "running s" not in section
    failed = dict(QUICKSTART_RECORD, status="failed", stages={"fit": {"status": "failed", "seconds": 2.5}})
    section = report.run_section_html(failed)
    assert "<b>failed</b>" in section and "<b>fit</b> failed after 2.5 s" in section
    done = dict(QUICKSTART_RECORD, status="complete",
                notebooks={"quickstart": dict(QUICKSTART_RECORD["notebooks"]["quickstart"], status="complete",
                                              seconds=61.2)})
    section = report.run_section_html(done)
    assert "<b>complete</b>," in section and "complete in 61.2 s" in section and "still running" not in section
    # the names in the note come from the record: escaped
    hostile = dict(QUICKSTART_RECORD, notebooks={"<img src=x>": QUICKSTART_RECORD["notebooks"]["quickstart"]})
    assert "<img src=x" not in report.run_section_html(hostile)


@pytest.mark.slow
def test_the_quickstart_report_shows_its_pipeline_complete(quickstart_run):
    html = (quickstart_run.folder / "report" / "index.html").read_text()
    run = html.split('<section class="this-run"')[1].split("</section>")[0]
    assert "<b>pipeline complete</b>" in run and "still running when this was written" in run
    assert "<b>running</b>" not in run


def test_mass_bars_are_scaled_to_the_largest_mass():
    """Masses are shares of the whole (1/n on average): bars 40 px × mass were 1 to 4 px wide."""
    table = pd.DataFrame({"mass": [0.1, 0.05, 0.0125], "strategy_purity": [0.5, 1.0, 0.25]},
                         index=pd.Index([0, 1, 2], name="component"))
    assert report.bar_columns(table) == {"mass": 0.1, "strategy_purity": 1.0}
    html = report.table_html(table, bars=report.bar_columns(table))
    widths = [int(w) for w in re.findall(r'class="bar" style="width:(\d+)px"', html)]
    assert widths == [40, 20, 20, 40, 5, 10]  # mass relative to the largest, purity to 1
    assert ">0.0125<" in html and ">0.05<" in html  # the numbers are still shown
    # one row has nothing to compare its mass with, unless the whole table's scale is given
    row = table.iloc[[1]]
    assert 'width:' not in report.table_html(row, bars=report.bar_columns(row)).split("<td")[2]
    assert "width:20px" in report.table_html(row, bars=report.bar_columns(table))
    assert report.table_html(table, bars=["strategy_purity"]).count('class="bar"') == 3  # a list: full at 1


def test_sortable_headers_are_buttons_and_the_table_is_named():
    """WAI-ARIA's sortable table: a screen reader heard plain headers (focusable ones) until a sort put aria-sort on
    one, and the table had no name. Each header's name is a button, the sorted column alone has aria-sort (the
    index's, from the start, where the rows are in its order), and a heading's id names the table."""
    frame = pd.DataFrame({"<b>x</b>": [2.0, 1.0]}, index=pd.Index([0, 1], name="component"))
    html = report.table_html(frame, sortable=True, titles={"<b>x</b>": 'a "definition"'}, labelled_by="components")
    assert html.count('<button type="button">') == 2 and "<b>x</b>" not in html and "tabindex" not in html
    assert '<th title="a &quot;definition&quot;"><button type="button">&lt;b&gt;x&lt;/b&gt;</button></th>' in html
    assert html.count("aria-sort") == 1 and '<th aria-sort="ascending"><button type="button">component<' in html
    assert '<table class="npeff-table sortable" aria-labelledby="components">' in html
    assert "aria-sort" not in report.table_html(frame.iloc[::-1], sortable=True)  # rows not in the index's order
    assert 'aria-label="index"' in report.table_html(frame.rename_axis(None), sortable=True)  # no button without a name
    assert "<button" not in report.table_html(frame)  # a table that does not sort has no buttons
    script = report.SORT_SCRIPT
    assert '"click"' in script and '"keydown"' not in script  # a button's own Enter and Space click it
    assert 'setAttribute("aria-sort", ascending ? "ascending" : "descending")' in script


def test_the_text_view_says_what_the_model_did_not_read():
    """print(page) showed the whole 1,694 characters of a text the model read 16 tokens of."""
    text = "never read " * 10 + "good film" + " and more" * 20
    spans = [(0, 0), (110, 114), (115, 119), (0, 0)]
    shown = report.read_text(text, spans, [True, False, False, True])
    assert shown == "[110 characters not read] good film [the model read no further: 180 more characters]"
    assert report.read_text("good film ❤️", [(0, 4), (5, 9)]) == "good film ❤️"


def test_the_style_sheet_holds_no_rule_an_engine_would_drop_whole():
    """Older Safari takes no thickness inside the text-decoration shorthand and dropped the strongest word's underline,
    its one mark that is no colour; the sorted column was told to screen readers alone (aria-sort)."""
    from workbench.report.html import CSS

    assert not re.search(r"text-decoration:\s*underline\s+\d", CSS)
    assert re.search(r"\.tok\.strongest \{ text-decoration-line: underline; text-decoration-thickness: 2px", CSS)
    assert 'th[aria-sort="ascending"]::after { content: " \\25B2"; content: " \\25B2" / ""; }' in CSS
    assert "-webkit-user-select: none; user-select: none" in CSS


def test_a_shared_page_names_paths_in_the_home_folder_from_tilde(tmp_path, monkeypatch):
    """The run record printed /home/<name>/... into the report and the notebook's page, which are made to be shared."""
    from workbench.report.html import run_section_html

    monkeypatch.setenv("HOME", str(tmp_path / "someone"))
    record = {"params": {"out": str(tmp_path / "someone" / "runs" / "x"), "elsewhere": "/data/x"},
              "notebooks": {"quickstart": {"source": str(tmp_path / "someone" / "nb" / "quickstart.ipynb"),
                                           "status": "complete", "parameters": {}}}}
    html = run_section_html(record)
    assert "someone" not in html and "~/runs/x" in html and "~/nb/quickstart.ipynb" in html and "/data/x" in html


def test_export_sections_refuses_a_file_it_did_not_write(tmp_path):
    """export_sections([...], "thesis.html") replaced the user's page without a word: a file that is not a page the
    workbench wrote is refused by name; its own page is replaced."""
    thesis = tmp_path / "thesis.html"
    thesis.write_text("<html><body>my thesis</body></html>")
    with pytest.raises(FileExistsError, match=r"thesis\.html is not a page the workbench wrote.*thesis-sections\.html"):
        report.export_sections([], thesis)
    assert thesis.read_text() == "<html><body>my thesis</body></html>"
    page = report.export_sections([], tmp_path / "page.html", title="first")
    report.export_sections([], page, title="second")
    assert "second" in page.read_text()


def test_the_deletion_check_reads_the_shaded_word_s_own_drop():
    """The shaded 'a' of "the dog sat on a mat" read the drop of 'mat' (the largest drop of any word holding an 'a'),
    and a pair's 'the' the drop of either text's."""
    effects = pd.DataFrame({"word": ["mat", "the", "a", "the"], "text": ["first", "first", "first", "second"],
                            "start": [17, 0, 15, 0], "stop": [20, 3, 16, 3], "coefficient": [0.5, 0.6, 0.7, 0.8],
                            "drop": [0.31, 0.2, 0.12, -0.05]})
    def shaded(strongest):
        return re.findall(r"<tr><td>\d+</td><td>(.*?)</td>", report.deletions_html([(5, strongest, effects)]))[0]

    assert shaded(("a", "first", 15, 16)) == "<bdi>a</bdi> 12%"
    assert shaded("a") == "<bdi>a</bdi> 12%"  # its text alone: the word itself before a word holding it
    assert shaded(("the", "second", 0, 3)) == "<bdi>the</bdi> -5%"
    assert shaded(("the", "first", 0, 3)) == "<bdi>the</bdi> 20%"
    # a part of a deleted word (a word between spaces) reads that word's drop
    assert shaded(("ma", None, 17, 19)) == "<bdi>ma</bdi> 31%" and shaded(None) == ""


def test_a_deletion_that_changes_nothing_reads_0_percent_not_minus_0():
    """A tiny model's pair whose head carried 90% of the mass read 'sat -0%, the -0%, not -0%' for drops of -3e-5."""
    effects = pd.DataFrame({"word": ["sat", "the"], "start": [8, 0], "stop": [11, 3], "coefficient": [0.76, 0.76],
                            "drop": [-3e-5, -0.004]})
    html = report.deletions_html([(3, ("sat", None, 8, 11), effects)])
    assert "-0%" not in html and "<bdi>sat</bdi> 0%, <bdi>the</bdi> 0%" in html


@pytest.mark.parametrize("meanwhile", ["puts its report in place", "moves the report aside"])
def test_two_exports_of_one_report_at_the_same_moment_both_succeed(hostile, tmp_path, monkeypatch, meanwhile):
    """Two notebooks or panels exporting the same report: the second's renames met the first's, and failed with a
    bare '[Errno 39] Directory not empty' (or 'No such file or directory'), its report lost."""
    out = tmp_path / "report"
    report.export_html(hostile, out, n_examples=1, highlight=False, dashboards=False, traces=False, progress=False)
    replace, other, raced_once = os.replace, tmp_path / ".report.tmp-other", []

    def raced(source, target):
        # the other export renames between this one's two renames (its report in place where this one's old report
        # was), or just before this one's first (the report moved aside, its own not yet in place)
        ours = Path(source).name.startswith(".report.tmp-") if meanwhile == "puts its report in place" else True
        if ours and not raced_once:
            raced_once.append(True)
            if out.exists():
                replace(out, tmp_path / ".report.old-other")
            if meanwhile == "puts its report in place":
                other.mkdir()
                (other / "index.html").write_text("the other export's report")
                replace(other, out)
        return replace(source, target)

    monkeypatch.setattr(pages.os, "replace", raced)
    index = report.export_html(hostile, out, n_examples=1, highlight=False, dashboards=False, traces=False,
                               progress=False)
    assert "the other export" not in index.read_text()  # the report moved in last stays
    assert {p.name for p in tmp_path.iterdir()} - {".report.old-other"} == {"report"}  # that one the other's to remove
