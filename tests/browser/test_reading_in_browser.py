"""The reading panels in a real browser: the dashboard's charts through JupyterLab's plotly renderer,
the reverse lookup, the frictions of issue 20 seen on screen (items 3, 5, 6, 8), the report's
contents and sorting (item 13), and a word visibly shaded on MiniLM (issue 17, item 2).
Screenshots go to test-artifacts/screenshots/."""

import os
import re
import shutil
from pathlib import Path

import pytest

from workbench.app.explore import RunExplorer

from .lab import CHROMIUM, SCREENSHOTS, run_notebook_in_lab, wait_in_notebook, write_notebook

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"no {CHROMIUM}: `make test` installs it (apt-get install chromium)"),
]

#: A MiniLM run folder (``python -m workbench demo --base minilm --out DIR``, several minutes on a CPU)
#: for the MiniLM screenshot; the test is skipped without one.
MINILM_RUN = os.environ.get("NPEFF_MINILM_RUN")
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "workbench.png"


def open_in_lab(page, lab, run_path, name: str, component=None):
    source = (f"from widgets import Workbench\nwb = Workbench.from_run({str(run_path)!r}"
              + (f", component={component}" if component is not None else "") + ")\nwb")
    write_notebook(lab.root / name, source)
    run_notebook_in_lab(page, lab, name)
    failed = SCREENSHOTS / f"failed-{name}.png"
    for selector in (".npeff-component-grid button:has-text('mass ▼')",
                     ".npeff-example-viewer .example .tok",  # filled in
                     ".npeff-dashboard .js-plotly-plot"):
        wait_in_notebook(page, lab, selector, timeout_ms=240_000, screenshot=failed)
    page.keyboard.press("Control+b")  # hide the file browser


def test_dashboard_lookup_and_frictions_in_jupyterlab(browser, lab, embedded_run):
    page = browser.new_page(viewport={"width": 1400, "height": 3000})
    run = lab.root / "run"  # below JupyterLab's root, as a user's run is: its exports can be served
    shutil.copytree(embedded_run.path, run)
    open_in_lab(page, lab, run, "reading.ipynb")
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    # The dashboard: its charts drawn by JupyterLab's plotly renderer, its tables beside them.
    dashboard = page.locator(".npeff-dashboard")
    page.wait_for_function("document.querySelectorAll('.npeff-dashboard .js-plotly-plot').length >= 3")
    text = dashboard.inner_text()
    assert "pushes toward class" in text and "Top tokens" in text and "Nearest components" in text
    dashboard.screenshot(path=SCREENSHOTS / "dashboard.png")

    # Item 6: no empty axes in the perturbation panel before a check.
    panel = page.locator(".npeff-perturbation-panel")
    assert panel.locator(".js-plotly-plot").evaluate_all("els => els.filter(e => e.offsetParent !== null).length") == 0
    panel.screenshot(path=SCREENSHOTS / "perturbation-before-check.png")

    # Item 8: the component table stays inside the notebook at 1400 px (it scrolls sideways).
    grid = page.locator(".npeff-component-grid").bounding_box()
    output = page.locator(".jp-OutputArea-output").first.bounding_box()
    assert grid["x"] + grid["width"] <= output["x"] + output["width"] + 1

    # Item 5: a search that matches nothing says so; one click resets the filters.
    browser_panel = page.locator(".npeff-component-browser")
    search = browser_panel.locator("input[placeholder='text in top examples']")
    search.fill("no text has this")
    search.press("Enter")
    browser_panel.get_by_text("no component matches the filters").first.wait_for()
    browser_panel.screenshot(path=SCREENSHOTS / "no-match.png")
    browser_panel.locator("button", has_text="reset filters").click()
    browser_panel.get_by_text(re.compile(r"components 1-10 of 16 matching")).wait_for()

    # Reverse lookup of a typed sentence, with its cost.
    lookup = page.locator(".npeff-lookup")
    query = lookup.locator("input[placeholder=\"an example's number, or a sentence\"]")
    query.fill("the acting was not terrible but the plot was dull .")
    query.press("Enter")
    lookup.get_by_text(re.compile(r"its PEF and coefficients took [\d.]+ s")).wait_for(timeout=120_000)
    assert lookup.locator(".npeff-table tbody tr").count() >= 1
    lookup.screenshot(path=SCREENSHOTS / "lookup.png")

    # Item 3: the export gives download links; the button keeps its label.
    page.locator(".npeff-workbench button", has_text="export tables").click()
    links = page.locator(".npeff-workbench a[download]")
    links.first.wait_for(timeout=60_000)
    assert links.count() >= 3
    # each link downloads the file written (in an HTML widget it resolved to /lab/tree/... and downloaded
    # JupyterLab's own page under the file's name)
    for k in range(links.count()):
        href, name = links.nth(k).evaluate("a => [a.href, a.getAttribute('download')]")
        response = page.request.get(href)
        assert response.ok and response.body() == (run / "exports" / name).read_bytes(), (href, response.status)
    button = page.locator(".npeff-workbench button", has_text="export tables").bounding_box()
    assert button["width"] >= 110
    page.locator(".npeff-workbench").screenshot(path=SCREENSHOTS / "workbench-reading.png")
    assert not errors, errors
    page.close()


def test_report_contents_and_sorting_in_the_browser(browser, embedded_run, tmp_path):
    """Item 13: a table of contents, back to the top, and tables that sort on a click."""
    from workbench import report

    explorer = RunExplorer.open(embedded_run.path)
    index = report.export_html(explorer, tmp_path / "report", n_examples=3, progress=False)
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    page.goto(index.as_uri())
    page.wait_for_function("document.querySelectorAll('.npeff-plot .main-svg').length >= 30")
    assert page.locator("nav.toc a").count() == explorer.n_components + 2
    table = page.locator("table.sortable").first

    def column(name):
        position = [h.strip() for h in table.locator("th").all_inner_texts()].index(name)
        return [float(c.get_attribute("data-sort")) for c in table.locator(f"tbody tr td:nth-child({position + 1})").all()]

    table.locator("th", has_text=re.compile(r"^g_norm$")).click()
    assert column("g_norm") == sorted(column("g_norm"))
    table.locator("th", has_text=re.compile(r"^g_norm$")).click()
    assert column("g_norm") == sorted(column("g_norm"), reverse=True)
    page.screenshot(path=SCREENSHOTS / "report-top.png")
    page.locator("nav.toc a", has_text="Component 3").click()
    page.wait_for_function("window.scrollY > 500")
    page.screenshot(path=SCREENSHOTS / "report-component.png")
    # Issue 21: each component's trace drawn from disk, its layer profile and its top example's heatmap.
    assert page.locator("#component-3 .npeff-plot .hm").count() == 1
    assert page.locator("#component-3 .npeff-plot", has_text="layer profile: top vs baseline").count() == 1
    page.locator("#component-3 .npeff-plot .hm").first.scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOTS / "report-trace.png")
    page.locator("#component-3 a.top").click()
    page.wait_for_function("window.scrollY < 50")
    page.close()


@pytest.mark.skipif(MINILM_RUN is None, reason="set NPEFF_MINILM_RUN to a MiniLM run folder (python -m workbench demo --base minilm)")
def test_a_word_is_visibly_shaded_on_minilm(browser, lab):
    """Issue 17, item 2: on MiniLM [CLS] and the head hold most of the mass, yet each example's strongest
    word is shaded at full strength, and the shares no word carries are named. Saves docs/workbench.png."""
    explorer = RunExplorer.open(MINILM_RUN)
    component = int(explorer.table["mass"].idxmax())
    page = browser.new_page(viewport={"width": 1400, "height": 4000})
    open_in_lab(page, lab, MINILM_RUN, "minilm.ipynb", component=component)
    viewer = page.locator(".npeff-example-viewer")
    alphas = viewer.locator(".tok").evaluate_all(
        "els => els.map(e => parseFloat(getComputedStyle(e).backgroundColor.split(',')[3] || '1'))")
    assert max(alphas) >= 0.75  # rgba(255,140,0,0.80): fully shaded
    first = viewer.locator(".example").first.inner_text()
    assert re.search(r"words \d+%", first) and re.search(r"special \d+%", first) and re.search(r"head \d+%", first)
    viewer.screenshot(path=SCREENSHOTS / "minilm-examples.png")
    # The examples and the dashboard, for docs/reading.md.
    top = page.locator(".npeff-example-viewer").bounding_box()
    bottom = page.locator(".npeff-dashboard").bounding_box()
    width = max(top["x"] + top["width"], bottom["x"] + bottom["width"]) - top["x"] + 16  # the whole legend line
    page.screenshot(path=DOCS_SCREENSHOT, clip={"x": top["x"] - 8, "y": top["y"] - 8, "width": width,
                                                "height": bottom["y"] + bottom["height"] - top["y"] + 16})
    page.close()
