"""Reverse lookup: which components an example of the run, or a sentence typed in, loads on."""

from __future__ import annotations

import re

import ipywidgets as w

from workbench import report
from workbench.app.explore import RunExplorer, check_explorer
from workbench.app.results import Lookup
from workbench.core.arguments import positive_int
from workbench.models.text import are_pairs

from .static import StaticFallback, error_fragment, on_click_shown


class LookupPanel(StaticFallback, w.VBox):
    """Type an example's number or a sentence; *look up* lists the components it loads on (a sentence's
    PEF and coefficients are computed on the spot, with their cost shown). Clicking a component in the
    list calls ``on_select(component)`` (the workbench selects it).

    ``LookupPanel(explorer, on_select=None, n=10)`` takes a :class:`~workbench.app.explore.RunExplorer` and
    lists at most ``n`` of the components a query loads on; ``lookup(query)`` does what the button does."""

    def __init__(self, explorer: RunExplorer, *, on_select=None, n: int = 10):
        self.explorer = check_explorer(explorer, "LookupPanel(RunExplorer.open(path))")
        if on_select is not None and not callable(on_select):
            raise TypeError(f"on_select must be a function of a component index, got {on_select!r}")
        self.on_select = on_select
        self.n = positive_int(n, "n")
        self._typing = True  # False while lookup() writes the query into the text field
        self.current: Lookup | None = None
        # a pair is typed as its cards show it, first ‖ second, or with || (no keyboard has ‖)
        self.what_to_type = "an example's number, or " + ("a pair: first || second" if are_pairs(self.explorer.texts)
                                                          else "a sentence")
        self.query = w.Text(placeholder=self.what_to_type,
                            description="look up",
                            continuous_update=False, layout=w.Layout(width="460px"))
        self.button = w.Button(description="look up", icon="search", layout=w.Layout(width="auto"))
        self.button.on_click(on_click_shown(self.run))
        self.query.observe(on_click_shown(lambda: self._typing and self.run()), names="value")
        self.status = w.HTML()
        self.body = w.HTML()
        self.select_buttons = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        super().__init__([w.HBox([self.query, self.button, self.status], layout=w.Layout(align_items="center", flex_flow="row wrap")),
                          self.body, self.select_buttons])
        self.add_class("npeff-lookup")

    def lookup(self, query: int | str) -> Lookup:
        """Look up ``query`` (an example number, or a text) and show the result; the explorer's error
        when it cannot be (an example number out of range, an empty text)."""
        if isinstance(query, str) and not query.strip():
            raise ValueError("the query is empty: give an example's number, or a text")
        self._typing = False
        try:
            self.query.value = str(query)
        finally:
            self._typing = True
        return self._show(query)  # a number stays a number: -1 is refused as an index, not read as the text "-1"

    def run(self) -> Lookup | None:
        """Look up what the box holds: a whole number (ASCII digits, signed: "-1" is refused as an index,
        as lookup(-1) is, not read as the sentence "-1"; "²" is no number) or a sentence."""
        text = self.query.value.strip()
        if not text:
            self.current = None
            self.body.value = report.fragment(f'<div class="note">Type {report.escape(self.what_to_type)}.</div>')
            self.select_buttons.children = []
            return None
        return self._show(int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else text)

    def _show(self, query: int | str) -> Lookup:
        self.current = None
        self.status.value = "<i>computing its PEF…</i>" if isinstance(query, str) else ""
        try:
            result = self.explorer.lookup(query, n=self.n)
        except Exception as error:
            self.status.value = ""
            self.body.value = error_fragment(error)
            self.select_buttons.children = []
            raise
        self.current = result
        self.status.value = ""
        self.body.value = report.fragment(report.lookup_html(result))
        buttons = []
        for j in result.loadings.index:
            button = w.Button(description=f"component {j}", layout=w.Layout(width="auto"))
            button.on_click(lambda _, j=int(j): self.on_select and self.on_select(j))
            buttons.append(button)
        self.select_buttons.children = buttons
        return result

    def static_html(self) -> str:
        return report.fragment("<i>No lookup yet.</i>" if self.current is None else report.lookup_html(self.current))

    def static_text(self) -> str:
        return "No lookup yet." if self.current is None else repr(self.current)
