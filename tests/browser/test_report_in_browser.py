"""The exported report as a reader's browser lays it out: charts as wide as their column (at a
1280 px window a chart drawn while the page loaded stayed 1264 px wide in a 413 px column), mass
bars that compare the components, a dark scheme where the system asks for one, and headers that
sort from the keyboard. No JupyterLab: the report is opened from disk."""

from pathlib import Path

import pytest

from workbench.app.explore import RunExplorer

from .lab import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"no {CHROMIUM}: `make test` installs it (apt-get install chromium)"),
]

#: [svg width, width of the .npeff-plot box, width of the box around it] of each drawn chart.
PLOT_WIDTHS = """() => Array.from(document.querySelectorAll('.npeff-plot')).map(function (plot) {
  var svg = plot.querySelector('svg.main-svg');
  return [svg ? svg.getBoundingClientRect().width : 0, plot.getBoundingClientRect().width,
          plot.parentElement.getBoundingClientRect().width];
})"""
CHARTS_FIT = f"({PLOT_WIDTHS})().every(function (w) {{ return w[0] <= w[1] + 1 && w[0] <= w[2] + 1; }})"


@pytest.fixture(scope="module")
def report_index(embedded_run, tmp_path_factory):
    from workbench import report

    explorer = RunExplorer.open(embedded_run.path)
    return report.export_html(explorer, tmp_path_factory.mktemp("report") / "report", n_examples=3, progress=False)


def open_report(browser, index, width: int, **options):
    page = browser.new_page(viewport={"width": width, "height": 900}, **options)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(index.as_uri())
    page.wait_for_function("document.querySelectorAll('.npeff-plot .main-svg').length >= 30")
    return page, errors


def test_charts_fit_their_columns(browser, report_index):
    page, errors = open_report(browser, report_index, 1280)
    # plotly resizes a chart 100 ms after its box changes: wait for every chart, then read the widths
    page.wait_for_function(CHARTS_FIT, timeout=10_000)
    widths = page.evaluate(PLOT_WIDTHS)
    assert widths and all(svg > 0 for svg, _, _ in widths)  # every chart drawn
    assert all(svg <= box + 1 and svg <= column + 1 for svg, box, column in widths), widths
    assert min(svg for svg, _, _ in widths) < 700  # side by side, not one per row
    # and again when the window narrows
    page.set_viewport_size({"width": 900, "height": 900})
    page.wait_for_function(CHARTS_FIT, timeout=10_000)
    assert not errors, errors
    page.close()


def test_mass_bars_compare_the_components(browser, report_index):
    page, _ = open_report(browser, report_index, 1280)
    table = page.locator("table.sortable").first
    bars = table.locator("td .bar").evaluate_all("els => els.map(e => e.getBoundingClientRect().width)")
    headers = [h.strip() for h in table.locator("th").all_inner_texts()]
    mass_bars = table.locator(f"tbody tr td:nth-child({headers.index('mass') + 1}) .bar").evaluate_all(
        "els => els.map(e => e.getBoundingClientRect().width)")
    assert bars and max(mass_bars) == 40 and min(mass_bars) < 40  # the largest mass full, the others less
    page.close()


def test_the_report_follows_a_dark_system_scheme(browser, report_index):
    background = "getComputedStyle(document.querySelector('.npeff')).backgroundColor"
    for scheme, dark in (("light", False), ("dark", True)):
        page, _ = open_report(browser, report_index, 1280, color_scheme=scheme)
        red, green, blue = (int(v) for v in page.evaluate(background).split("(")[1].split(")")[0].split(",")[:3])
        assert (red + green + blue < 3 * 80) == dark, (scheme, red, green, blue)
        page.close()


def test_table_headers_sort_from_the_keyboard(browser, report_index):
    page, _ = open_report(browser, report_index, 1280)
    table = page.locator("table.sortable").first
    headers = [h.strip() for h in table.locator("th").all_inner_texts()]
    column = headers.index("g_norm") + 1

    def values():
        return [float(c.get_attribute("data-sort")) for c in table.locator(f"tbody tr td:nth-child({column})").all()]

    header = table.locator(f"th:nth-child({column})")
    header.locator("button").focus()
    assert page.evaluate("document.activeElement.textContent") == "g_norm"
    page.keyboard.press("Enter")
    assert values() == sorted(values()) and header.get_attribute("aria-sort") == "ascending"
    scroll = page.evaluate("window.scrollY")
    page.keyboard.press(" ")
    assert values() == sorted(values(), reverse=True) and header.get_attribute("aria-sort") == "descending"
    assert page.evaluate("window.scrollY") == scroll  # Space sorted rather than scrolled
    # Tab reaches the headers' buttons, and only the sorted one says how it is sorted
    assert table.locator("th > button").count() == len(headers)
    assert table.locator("th[aria-sort]").count() == 1
    page.close()
