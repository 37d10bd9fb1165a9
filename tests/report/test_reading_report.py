"""The report for reading: a table of contents, links back to the top, sortable tables with defined
columns, each component's dashboard and where it lives; highlights scaled over the visible tokens."""

import numpy as np
import pandas as pd
import pytest

from workbench import report
from workbench.app.explore import RunExplorer


@pytest.fixture(scope="module")
def explorer(embedded_run):
    return RunExplorer.open(embedded_run.path)


@pytest.fixture(scope="module")
def index_html(explorer, tmp_path_factory):
    return report.export_html(explorer, tmp_path_factory.mktemp("report") / "report", n_examples=3,
                              progress=False).read_text()


def test_report_has_a_table_of_contents_and_ways_back_to_the_top(explorer, index_html):
    """Item 13."""
    toc = index_html.split('<nav class="toc">')[1].split("</nav>")[0]
    assert all(f'href="#component-{j}"' in toc for j in explorer.table.index)
    assert index_html.count('href="#top"') == explorer.n_components and '<body id="top">' in index_html


def test_report_tables_sort_and_define_their_columns(explorer, index_html):
    assert 'class="npeff-table sortable"' in index_html and report.SORT_SCRIPT in index_html
    definitions = explorer.definitions()["definition"]
    assert f'<th title="{report.escape(definitions["mass"])}"><button type="button">mass</button></th>' in index_html
    assert 'sortable" aria-labelledby="components">' in index_html and '<h2 id="components">' in index_html
    assert "What the columns mean" in index_html
    # Numbers sort by value, not by their 3-digit text.
    mass = explorer.table["mass"].iloc[0]
    assert f'data-sort="{float(mass)!r}"' in index_html


def test_report_shows_each_components_dashboard_and_location(explorer, index_html):
    """Issue 17 item 3 and issue 20's dashboard, in the report."""
    assert index_html.count('aria-label="Where the component lives') == explorer.n_components  # one chart each
    assert index_html.count("Top tokens") == explorer.n_components
    assert "plotly.js v" in index_html  # the dashboards' charts are drawn offline


def test_highlight_scale_ignores_special_tokens():
    """Issue 17 item 2: [CLS] at +0.0343 no longer sets the scale that leaves 'terrible' (+0.0008) blank."""
    tokens = ["[CLS]", "the", "movie", "was", "terrible", "[SEP]"]
    special = [True, False, False, False, False, True]
    raw = np.array([0.0343, 0.0001, 0.0002, 0.0001, 0.0008, 0.002])
    from workbench.analysis.token_shares import token_shares

    visible = token_shares(raw, special, head_share=0.9).visible
    html = report.highlighted_text_html("the movie was terrible", tokens, visible, special=special, raw=raw)
    assert "255,140,0),0.80)" in html  # 'terrible' fully shaded
    assert "terrible: +66.7% of the words&#x27; share (+0.08% of the example&#x27;s mass" in html
    old = report.highlighted_text_html("the movie was terrible", tokens, raw, special=None)
    assert "255,140,0),0.02)" in old  # the old scale, every word blank


def test_dashboard_and_lookup_html_escape_the_data(explorer):
    from workbench.app.results import Lookup

    lookup = Lookup("<b>bold</b>", pd.DataFrame({"coefficient": [1.0], "scaled": [1.0], "share": [1.0]},
                                                index=pd.Index([3], name="component")))
    html = report.lookup_html(lookup)
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html
    d = explorer.dashboard(0, sweep=None)
    d.top_tokens = pd.DataFrame({"mean share": [0.5], "count": [2], "total": [1.0]},
                                index=pd.Index(["<script>x</script>"], name="token"))
    assert "<script>x</script>" not in report.dashboard_tables_html(d)


def test_the_dashboard_s_charts_have_their_numbers_in_text(explorer):
    """Without JavaScript, or to a screen reader, the histogram, the location breakdown and the logit change were
    their titles alone."""
    d = explorer.dashboard(0, sweep=None)
    html = report.dashboard_html(d)
    numbers = html.split('<details class="chart-numbers">', 1)[1].split("</details>", 1)[0]
    assert "Coefficient histogram" in numbers and "Mass by layer and module kind" in numbers
    assert all(f">{int(c)}<" in numbers for c in d.histogram["count"])
    assert all(layer in numbers for layer in d.location.index)
    if d.logit_change is not None:
        assert "log-probability" in numbers


def test_report_traces_each_component_through_the_layers(explorer, index_html):
    """Issue 21 item 3 in the report: per component, the layer profile over its top examples against
    baseline ones, and the heatmap of its top example, with the numbers of ``explorer.trace`` as the trace
    panel takes it (the report's own counts read 1.53 where the panel beside it read 1.95)."""
    assert index_html.count("Perturbation trace of component") == explorer.n_components
    for j in explorer.table.index[:3]:
        section = index_html.split(f'<section id="component-{j}">')[1].split("</section>")[0]
        trace = explorer.trace(j)
        assert trace.examples[0] == explorer.top_examples(j, page_size=1, highlight=False).examples[0].example
        assert f"component {j}, example {trace.examples[0]} (top)" in section  # the top example's heatmap
        assert section.count("hidden-state change per layer and token") == 0  # titled by its example
        assert "layer profile: top vs baseline" in section
        top = trace.profile["top"]
        assert f'data-sort="{float(top.iloc[-1])!r}"' in section  # its numbers, in the table beside the chart
        # and the heatmap's, folded, a token per row: without JavaScript, or to a screen reader, it was its title
        numbers = section.split("The heatmaps' numbers")[1].split("</details>")[0]
        heat = trace.heatmap(0).round(4)
        assert all(f">{report.escape(token)}</td>" in numbers for token in heat.columns)
        assert f'data-sort="{float(heat.iloc[-1, -1])!r}"' in numbers


def test_report_of_a_run_without_a_model_has_no_trace(tmp_path):
    from tests.widgets.synthetic import synthetic_run

    explorer = RunExplorer.open(synthetic_run(tmp_path / "run", n_components=3, n_examples=300, density=0.1))
    assert not explorer.has_model
    html = report.export_html(explorer, tmp_path / "report", n_examples=2, progress=False).read_text()
    assert "Perturbation trace" not in html
    with pytest.raises(FileNotFoundError, match="has no model/ folder"):
        explorer.trace(0)
    html = report.export_html(explorer, tmp_path / "report", n_examples=2, progress=False, traces=True).read_text()
    assert html.count("No perturbation trace: FileNotFoundError") == 3  # asked for: each section says why
