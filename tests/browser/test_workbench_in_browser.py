"""The workbench in a real browser: JupyterLab on localhost driven by headless Chromium, and the
exported HTML opened from disk. Screenshots of each panel go to test-artifacts/screenshots/."""

import json
import re
import statistics
import time
from pathlib import Path

import pytest

from workbench import report
from workbench.app.explore import RunExplorer

from ..widgets.synthetic import synthetic_run
from .lab import ARTIFACTS, CHROMIUM, SCREENSHOTS, run_notebook_in_lab, wait_in_notebook, write_notebook

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"no {CHROMIUM}: `make test` installs it (apt-get install chromium)"),
]

#: Set in the page by the hostile example texts if any of them ran.
INJECTED = "window.__npeffInjected"


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1500, "height": 2600})
    yield page
    page.close()


def open_workbench(page, lab, run_path, name: str, page_size: int = 20) -> float:
    """Run ``Workbench.from_run(run_path, page_size=...)`` in a notebook in JupyterLab; seconds until the table shows."""
    write_notebook(lab.root / name, f"from widgets import Workbench\n"
                                    f"wb = Workbench.from_run({str(run_path)!r}, page_size={page_size})\nwb")
    started = run_notebook_in_lab(page, lab, name)
    failed = SCREENSHOTS / f"failed-{name}.png"
    wait_in_notebook(page, lab, ".npeff-component-grid button:has-text('mass ▼')", timeout_ms=240_000, screenshot=failed)
    opened = time.monotonic() - started
    wait_in_notebook(page, lab, ".npeff-example-viewer .example", timeout_ms=120_000, screenshot=failed)
    return opened


def test_workbench_in_jupyterlab(page, lab, hostile_quickstart_run):
    """The quickstart's run (its top examples made hostile) in JupyterLab: click a component, see its
    examples (the HTML in them shown as text), run a perturbation, read the result."""
    open_workbench(page, lab, hostile_quickstart_run.path, "workbench.ipynb")
    page.keyboard.press("Control+b")  # hide the file browser: more room for the panels
    browser_panel = page.locator(".npeff-component-browser")
    browser_panel.screenshot(path=SCREENSHOTS / "component-browser.png")

    page.locator(".npeff-component-grid button", has_text=re.compile(r"^\s*3\s*$")).click()
    viewer = page.locator(".npeff-example-viewer")
    viewer.get_by_text("Component 3", exact=True).wait_for()
    viewer.get_by_text("component 3: examples 1-5").wait_for()
    text = viewer.inner_text()
    assert "<script>" in text or "<img src=x" in text  # the hostile top example, shown as text
    assert viewer.locator(".example").count() == 5 and viewer.locator(".tok").count() > 10
    assert page.evaluate(INJECTED) is None
    viewer.screenshot(path=SCREENSHOTS / "example-viewer.png")

    # The trace of the component clicked, drawn live: its layer profile (two lines) and a heatmap.
    trace = page.locator(".npeff-trace-panel")
    trace.get_by_text("Perturbation trace of component 3").wait_for(timeout=120_000)
    page.wait_for_function("document.querySelectorAll('.npeff-trace-panel .js-plotly-plot .scatterlayer .trace')"
                           ".length >= 2 && document.querySelector('.npeff-trace-panel .js-plotly-plot .hm') !== null",
                           timeout=120_000)
    trace.screenshot(path=SCREENSHOTS / "trace-panel.png")

    panel = page.locator(".npeff-perturbation-panel")
    panel.locator("button", has_text="run check").click()
    ratio = panel.locator(".npeff-kl-ratio")
    ratio.wait_for(timeout=120_000)
    expected = RunExplorer.open(hostile_quickstart_run.path).perturb(3, epsilon=0.1)  # the panel's defaults
    assert ratio.inner_text() == f"{expected.kl_ratio:.3g}"
    assert "Component 3 at ε = 0.1" in panel.locator(".npeff-perturbation-summary").inner_text()
    page.wait_for_function(
        "document.querySelectorAll('.npeff-perturbation-panel .js-plotly-plot .bars path').length >= 8")
    panel.screenshot(path=SCREENSHOTS / "perturbation-panel.png")
    page.locator(".npeff-workbench").screenshot(path=SCREENSHOTS / "workbench.png")
    assert page.evaluate(INJECTED) is None
    assert_charts_shown(page)

    # A narrow window (a laptop, JupyterLab's side bar open): every chart stays inside the notebook's column
    page.set_viewport_size({"width": 720, "height": 2600})
    page.wait_for_timeout(2000)  # plotly redraws on the window's resize event
    charts = assert_charts_shown(page)
    assert all(width <= column + 1 for width, column, _, _ in charts), charts
    page.locator(".npeff-workbench").screenshot(path=SCREENSHOTS / "workbench-narrow.png")
    page.set_viewport_size({"width": 360, "height": 2600})  # a phone: the workbench is 244 px wide
    page.wait_for_timeout(2000)
    assert_charts_shown(page)
    # a chart of 280 px at least ran 38 px past the workbench's edge, where the output area clipped it (plotly
    # draws its own 2 px beyond its box)
    past = page.evaluate("""() => { const edge = document.querySelector('.npeff-workbench').getBoundingClientRect().right;
        return [...document.querySelectorAll('.npeff-workbench .js-plotly-plot svg.main-svg')]
          .map(svg => svg.getBoundingClientRect()).filter(r => r.width > 0 && r.right > edge + 4)
          .map(r => Math.round(r.right - edge)); }""")
    assert past == [], past


#: [chart width, width of the output area it is in, height shown, height drawn] for every chart drawn
#: in the workbench.
CHART_BOXES = """() => [...document.querySelectorAll('.npeff-workbench .js-plotly-plot')].flatMap(plot => {
  const svg = plot.querySelector('svg.main-svg');
  const column = plot.closest('.jp-OutputArea');
  return svg && column && svg.getBoundingClientRect().width > 0
    ? [[svg.getBoundingClientRect().width, column.getBoundingClientRect().width,
        plot.getBoundingClientRect().height, svg.getBoundingClientRect().height]] : [];
})"""


def assert_charts_shown(page) -> list:
    """Every chart of the workbench (the dashboard's included) shown as tall as it is drawn: a chart
    whose box collapses to 0 px is drawn, and invisible."""
    charts = page.evaluate(CHART_BOXES)
    assert len(charts) >= 5, charts
    assert all(shown >= 0.9 * drawn > 100 for _, _, shown, drawn in charts), charts
    return charts


def test_a_failing_cell_is_reported_with_its_traceback(page, lab):
    """The wait for a panel ends as soon as the cell fails, and says why (a bare timeout would not)."""
    write_notebook(lab.root / "fails.ipynb", "from widgets import Workbench\nWorkbench.from_run('no such run')")
    run_notebook_in_lab(page, lab, "fails.ipynb")
    started = time.monotonic()
    with pytest.raises(AssertionError, match="(?s)the cell failed.*Traceback.*no such run"):
        wait_in_notebook(page, lab, ".npeff-component-grid", timeout_ms=120_000, screenshot=SCREENSHOTS / "failed-cell.png")
    assert time.monotonic() - started < 60


def test_two_thousand_components_stay_responsive(page, lab, tmp_path_factory):
    """Open and page through 2,000 components over 50,000 examples; prints the timings (no limits asserted)."""
    run_path = synthetic_run(tmp_path_factory.mktemp("runs") / "thousands", n_components=2000, n_examples=50_000)
    opened = open_workbench(page, lab, run_path, "thousands.ipynb")
    caption = page.locator(".npeff-component-browser").locator("text=/components \\d+-\\d+ of/").first
    assert "of 2000 matching" in caption.inner_text()

    def timed(action, expected: str) -> float:
        started = time.monotonic()
        action()
        page.wait_for_function(
            "text => [...document.querySelectorAll('.npeff-component-browser .widget-html-content')]"
            ".some(e => e.textContent.includes(text))", arg=expected, timeout=60_000)
        return time.monotonic() - started

    next_button = page.locator(".npeff-component-browser button", has_text="next ▶")
    pages = [timed(next_button.click, f"components {20 * k + 1}-{20 * k + 20} of 2000") for k in range(1, 6)]
    search = page.locator(".npeff-component-browser input[placeholder='text in top examples']")
    searched = timed(lambda: (search.fill("zorp"), search.press("Enter")), "matching (2000 in all), page 1")
    sorted_ = timed(lambda: page.locator(".npeff-component-grid button", has_text="label_purity").click(),
                    "sorted by label_purity")
    page.locator(".npeff-component-browser").screenshot(path=SCREENSHOTS / "component-browser-2000.png")
    figures = {"components": 2000, "examples": 50_000, "open_s": round(opened, 2),
               "page_median_s": round(statistics.median(pages), 3), "page_max_s": round(max(pages), 3),
               "first_search_s": round(searched, 3), "sort_s": round(sorted_, 3)}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "browser-timings.json").write_text(json.dumps(figures, indent=2))
    print("\nbrowser timings with 2,000 components:", figures)


def test_exported_html_opens_from_disk(page, quickstart_run, hostile_run, tmp_path):
    """The notebook's HTML rendering and the reports: tables and charts there with no server and no network."""
    page.goto(quickstart_run.html.as_uri())
    assert page.locator(".this-run").first.is_visible()
    assert page.locator(".npeff-table").count() >= 2 and page.locator(".tok").count() > 10
    page.wait_for_function("document.querySelectorAll('.npeff-plot .main-svg').length >= 2")
    page.locator(".this-run").first.screenshot(path=SCREENSHOTS / "notebook-html-run-record.png")
    page.locator(".npeff-plot").first.screenshot(path=SCREENSHOTS / "notebook-html-chart.png")

    page.goto((quickstart_run.folder / "report" / "index.html").as_uri())
    rows = page.locator(".npeff-table").first.locator("tbody tr")
    assert rows.count() == 6
    page.wait_for_function("document.querySelectorAll('.npeff-plot .main-svg').length >= 2")
    page.screenshot(path=SCREENSHOTS / "report.png")

    hostile = RunExplorer.open(hostile_run.path)
    index = report.export_html(hostile, tmp_path / "hostile", perturbations=[hostile.perturb(1, n_baseline=30)],
                               n_examples=2, max_single_page=8, progress=False)
    page.goto(index.as_uri())
    assert page.locator(".npeff-table tbody tr").count() == hostile.n_components
    page.locator(".npeff-table a", has_text=re.compile(r"^1$")).first.click()
    page.wait_for_function("document.querySelectorAll('.npeff-plot .main-svg').length >= 2")
    assert "<script>" in page.inner_text("body") or "<img src=x" in page.inner_text("body")
    assert page.evaluate(INJECTED) is None


def test_nbconvert_rendering_without_widget_state(page, quickstart_run, tmp_path):
    """Plain nbconvert of the executed quickstart (no widget state, no help from the runner)."""
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter().from_filename(str(quickstart_run.notebook))
    path = tmp_path / "plain.html"
    path.write_text(html)
    page.goto(path.as_uri())
    assert page.locator(".npeff-table").count() >= 2 and page.locator(".tok").count() > 10
    page.locator(".npeff-workbench, .jp-OutputArea-output:has(.npeff-table)").first.screenshot(
        path=SCREENSHOTS / "nbconvert-without-widget-state.png")


PANEL_IN_LAB = """import numpy as np, pandas as pd, ipywidgets as w
from widgets.chart import Chart
from workbench import report
frame = pd.DataFrame(np.full((2, 2), 0.25), index=["embeddings", "layer 0"], columns=["MLP in", "LayerNorm"])
w.VBox([w.HTML(report.fragment(report.table_html(pd.DataFrame({"mass": [0.5]})))), Chart(report.location_figure(frame), width=500)])"""


@pytest.mark.parametrize("theme, scheme", [("JupyterLab Dark", "light"), ("JupyterLab Light", "dark")])
def test_a_panel_takes_jupyterlabs_theme_not_the_systems_scheme(browser, lab, theme, scheme):
    """A panel's table and live chart followed the system's scheme: dark in a light JupyterLab, light in a dark one."""
    settings = lab.root / ".lab" / "settings" / "@jupyterlab" / "apputils-extension" / "themes.jupyterlab-settings"
    settings.write_text(json.dumps({"theme": theme}))
    page = browser.new_page(viewport={"width": 1200, "height": 900}, color_scheme=scheme)
    try:
        name = f"theme-{scheme}.ipynb"
        write_notebook(lab.root / name, PANEL_IN_LAB)
        run_notebook_in_lab(page, lab, name)
        wait_in_notebook(page, lab, ".npeff .jp-RenderedPlotly .main-svg", timeout_ms=120_000,
                         screenshot=SCREENSHOTS / f"failed-{name}.png")
        light = page.evaluate("document.body.dataset.jpThemeLight")
        colours = page.evaluate("""() => [getComputedStyle(document.querySelector('.npeff th')).backgroundColor,
            getComputedStyle(document.querySelector('.npeff .jp-RenderedPlotly .bglayer .bg')).fill,
            getComputedStyle(document.querySelector('.npeff .jp-RenderedPlotly .gtitle')).fill]""")
    finally:
        page.close()
        settings.unlink()
    dark = [sum(float(v) for v in re.findall(r"[\d.]+", c)[:3]) < 3 * 80 for c in colours]
    assert light == ("false" if theme == "JupyterLab Dark" else "true")
    assert dark == ([True, True, False] if theme == "JupyterLab Dark" else [False, False, True]), (theme, colours)
