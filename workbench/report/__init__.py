"""Static HTML for everything the workbench shows: tables, highlighted examples, charts, run records.

The same functions serve three places: the ``text/html`` part of every result object a
notebook displays (so a notebook opened without a widget manager, in VS Code, on GitHub or
through nbconvert, still shows the content), the static snapshots beside the live widgets,
and :func:`export_html`, a report folder readable offline from disk.

- :mod:`.html`: fragments, with every text from the data escaped in one place (:func:`escape`);
- :mod:`.charts`: the perturbation charts (plotly);
- :mod:`.pages`: whole pages and the report folder;
- :mod:`.strategies`: strategies over training, between two models, through the layers.
- :mod:`.traces`: a perturbation trace's charts and section (in the strategy pages and the run report).

This package renders what it is given and computes nothing; it imports no other part of
the workbench, and no torch.
"""

from .charts import (
    KIND_COLOURS,
    SET_COLOURS,
    SIGN_NAMES,
    accuracy_figure,
    figure_html,
    histogram_figure,
    kl_figure,
    location_figure,
    logit_figure,
    perturbation_html,
    sweep_figure,
)
from .dashboard import (
    dashboard_figures,
    dashboard_html,
    dashboard_numbers_html,
    dashboard_tables_html,
    definitions_html,
    lookup_html,
)
from .html import (
    CSS,
    LEGEND,
    bar_columns,
    component_page_html,
    deletions_html,
    error_html,
    escape,
    example_html,
    examples_page_html,
    format_value,
    fragment,
    highlighted_text_html,
    home_as_tilde,
    percent,
    plotly_text,
    read_html,
    read_text,
    run_section_html,
    run_section_text,
    shares_html,
    style,
    table_html,
    token_colour,
)
from .pages import MAX_SINGLE_PAGE_COMPONENTS, PLOTLY_FILE, SORT_SCRIPT, export_html, html_page, plotlyjs_script
from .strategies import (
    accuracy_over_training_figure,
    export_sections,
    model_diff_figure,
    model_diff_html,
    over_training_figure,
    over_training_html,
    section_html,
)
from .traces import trace_heatmap_figure, trace_html, trace_profile_figure

__all__ = [
    "accuracy_over_training_figure",
    "export_sections",
    "section_html",
    "model_diff_figure",
    "model_diff_html",
    "over_training_figure",
    "over_training_html",
    "trace_heatmap_figure",
    "trace_html",
    "trace_profile_figure",
    "CSS",
    "KIND_COLOURS",
    "LEGEND",
    "MAX_SINGLE_PAGE_COMPONENTS",
    "PLOTLY_FILE",
    "SET_COLOURS",
    "SIGN_NAMES",
    "SORT_SCRIPT",
    "accuracy_figure",
    "bar_columns",
    "component_page_html",
    "dashboard_figures",
    "dashboard_html",
    "dashboard_numbers_html",
    "dashboard_tables_html",
    "definitions_html",
    "deletions_html",
    "error_html",
    "escape",
    "example_html",
    "examples_page_html",
    "export_html",
    "figure_html",
    "format_value",
    "fragment",
    "highlighted_text_html",
    "home_as_tilde",
    "percent",
    "plotly_text",
    "read_html",
    "read_text",
    "histogram_figure",
    "html_page",
    "kl_figure",
    "location_figure",
    "logit_figure",
    "lookup_html",
    "perturbation_html",
    "plotlyjs_script",
    "run_section_html",
    "run_section_text",
    "shares_html",
    "style",
    "sweep_figure",
    "table_html",
    "token_colour",
]
