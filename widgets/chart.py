"""A plotly chart inside a panel, drawn by the front end's plotly renderer.

Why not plotly's ``FigureWidget``: since plotly 6 each FigureWidget is an anywidget whose state
carries the whole plotly.js bundle (about 5 MB). A workbench with five charts sent 25 MB to the
browser at each display, and into every notebook saved with its widget state. An ``Output``
holding the figure as ``application/vnd.plotly.v1+json`` sends the figure alone (kilobytes); the
front end's plotly renderer (the jupyterlab-plotly extension the plotly package installs, and
VS Code's own) loads plotly.js once. Our charts are always replaced whole, so FigureWidget's
in-place updates were never used.
"""

from __future__ import annotations

import json

import ipywidgets as w
import plotly.graph_objects as go
import plotly.io as pio

from workbench import report

#: JupyterLab's plotly renderer (the jupyterlab-plotly extension, shipped with plotly).
PLOTLY_MIME = "application/vnd.plotly.v1+json"


class Chart(w.Output):
    """One plotly figure, ``width`` pixels wide where the panel has the room, narrower where it
    has not (a notebook column beside JupyterLab's side bars); ``chart.figure`` is the figure shown."""

    def __init__(self, figure: go.Figure, *, width: int):
        super().__init__(layout=fluid_layout(width))
        self.add_class("npeff")  # the page's colours: dark where JupyterLab's theme is (report.css)
        self.figure: go.Figure = go.Figure()
        self.show(figure)

    def show(self, figure: go.Figure) -> None:
        """Replace the chart by ``figure`` in one update of the front end."""
        self.figure = fluid(figure)
        self.outputs = (display_data(self.figure),)


def fluid_layout(width: int) -> w.Layout:
    """A box ``width`` pixels wide at most, that shrinks with its container (down to 200 px): a
    figure of fixed width overflowed the column, and plotly does not shrink one (at 280 px the
    perturbation panel's charts ran 40 px past a phone-width notebook's column of 244)."""
    return w.Layout(flex=f"0 1 {width}px", width=f"{width}px", max_width="100%", min_width="200px")


def fluid(figure: go.Figure) -> go.Figure:
    """``figure`` (a copy) drawn at its box's width: the renderer sizes it, and again when JupyterLab
    resizes the panel."""
    figure = go.Figure(figure)
    figure.layout.width = None
    return figure.update_layout(autosize=True)


def display_data(figure: go.Figure) -> dict:
    """``figure`` as an output of an ``Output`` widget: plotly's mime bundle (JSON-clean: numpy arrays
    as lists) and an HTML fallback for front ends without a plotly renderer. Set as the output's
    value, never printed inside ``with output``: that captures nothing on the thread the workbench
    fills in on, and IPython's formatters give empty bundles there."""
    spec = json.loads(pio.to_json(figure, validate=False))
    # Not plotly's "responsive": JupyterLab's renderer resizes its charts through relayout(autosize), which
    # clears the layout's height, and a responsive chart then takes 100% of the renderer's box, whose
    # height is its content's: 0. The dashboard's charts were drawn 0 px tall until the window changed.
    spec["config"] = {"displaylogo": False}
    return {"output_type": "display_data", "metadata": {},
            "data": {PLOTLY_MIME: spec, "text/html": report.figure_html(figure), "text/plain": "a plotly chart"}}
