"""The component browser: a sortable, filterable, paged table of a run's components."""

from __future__ import annotations

import dataclasses

import ipywidgets as w
import traitlets

from workbench import report
from workbench.app.explore import ComponentFilter, ComponentPage, RunExplorer, check_explorer
from workbench.core.arguments import positive_int

from .static import StaticFallback

ANY = "(any)"


class ComponentBrowser(StaticFallback, w.VBox):
    """One page of the component table at a time; click a component's number to select it.

    The row widgets are made once and refilled on every page, so paging through 2,000
    components sends a few value updates, never new widgets. Click a column header to sort by
    it (again to reverse). ``selected`` (a traitlet) is the selected component or None:
    observe it with ``browser.observe(callback, names="selected")``.

    ``ComponentBrowser(explorer, page_size=20)`` takes a :class:`~workbench.app.explore.RunExplorer` and lists
    ``page_size`` components a page; ``select(j)`` selects component j as a click does.
    """

    selected = traitlets.Int(None, allow_none=True)

    def __init__(self, explorer: RunExplorer, *, page_size: int = 20):
        self.explorer = check_explorer(explorer, "ComponentBrowser(RunExplorer.open(path))")
        self.page_size = positive_int(page_size, "page_size")
        self.filter = ComponentFilter()
        self.page_number = 0
        self.columns = ["component", *explorer.table.columns]

        self.search = w.Text(placeholder="text in top examples", description="search",
                             continuous_update=False, layout=w.Layout(width="260px"))
        purity_columns = explorer.purity_columns() or ["label_purity"]
        self.purity_column = w.Dropdown(options=purity_columns, value=purity_columns[0], description="purity of",
                                        layout=w.Layout(width="230px"))
        self.min_purity = w.FloatSlider(0.0, min=0.0, max=1.0, step=0.05, description="≥", continuous_update=False,
                                        readout_format=".2f", layout=w.Layout(width="220px"))
        self.min_mass = w.BoundedFloatText(0.0, min=0.0, max=1.0, step=0.001, description="mass ≥",
                                           layout=w.Layout(width="160px"))
        labels = sorted({str(v) for v in explorer.table["label"].dropna()}) if "label" in explorer.table else []
        names = explorer.label_names
        # Shown as the examples show them ("0 (negative)"); the filter's value stays the label itself.
        options = [(ANY, ANY)] + [(f"{v} ({names[v]})" if v in names else v, v) for v in labels]
        self.label = w.Dropdown(options=options, value=ANY, description="label", layout=w.Layout(width="200px"))
        for control in (self.search, self.purity_column, self.min_purity, self.min_mass, self.label):
            control.observe(self._filters_changed, names="value")

        self.previous = w.Button(description="◀ previous", layout=w.Layout(width="110px"))
        self.next = w.Button(description="next ▶", layout=w.Layout(width="110px"))
        self.previous.on_click(lambda _: self.show_page(self.page_number - 1))
        self.next.on_click(lambda _: self.show_page(self.page_number + 1))
        self.caption = w.HTML()
        self.reset = w.Button(description="reset filters", icon="undo", tooltip="clear the search and every filter",
                              layout=w.Layout(width="auto"))
        self.reset.on_click(lambda _: self.reset_filters())

        definitions = explorer.definitions()["definition"].to_dict()
        self.headers = [w.Button(description=c, tooltip=f"sort by {c}" + (f": {definitions[c]}" if c in definitions else ""),
                                 layout=w.Layout(width="auto"))
                        for c in self.columns]
        for column, header in zip(self.columns, self.headers):
            header.on_click(lambda _, column=column: self.sort_by(column))
        # never more rows than components: page_size=10**7 made ten million buttons, and the kernel ran out of memory
        n_rows = max(1, min(self.page_size, explorer.n_components))
        self.row_buttons = [w.Button(layout=w.Layout(width="auto")) for _ in range(n_rows)]
        for button in self.row_buttons:
            button.on_click(self._row_clicked)
        self.cells = [[w.HTML(layout=w.Layout(padding="0 6px")) for _ in self.columns[1:]] for _ in range(n_rows)]
        grid_children = list(self.headers)
        for button, cells in zip(self.row_buttons, self.cells):
            grid_children += [button, *cells]
        self.grid = w.GridBox(grid_children, layout=w.Layout(
            grid_template_columns=" ".join(["max-content"] * len(self.columns)), grid_gap="1px 2px",
            align_items="center", max_width="100%", overflow="auto"))  # scrolls sideways, never wider than the notebook
        self.grid.add_class("npeff-component-grid")
        self.message = w.HTML()

        filters = w.HBox([self.search, self.purity_column, self.min_purity, self.min_mass, self.label],
                         layout=w.Layout(flex_flow="row wrap"))
        paging = w.HBox([self.previous, self.next, self.reset, self.caption], layout=w.Layout(align_items="center"))
        super().__init__([filters, paging, self.message, self.grid])
        self.add_class("npeff-component-browser")
        self.show_page(0)

    # -- actions -----------------------------------------------------------------------

    def show_page(self, page: int, filter: ComponentFilter | None = None) -> ComponentPage:
        """Show page ``page`` (clamped to the pages there are) of the filtered, sorted table; with ``filter``, of
        that filter, which is kept only once it could be applied."""
        try:
            result = self.explorer.components(filter or self.filter, page=page, page_size=self.page_size)
        except (TypeError, ValueError) as error:  # a filter the table cannot apply: the last one that could stays
            self.message.value = report.fragment(report.error_html(f"{type(error).__name__}: {error}"))
            raise
        # kept before it was checked, sort_by("no such column") failed every page, sort and filter after it
        self.filter = filter or self.filter
        self.message.value = ""
        self.page_number = result.page
        self.current = result
        self._fill(result)
        return result

    def reset_filters(self) -> None:
        """Clear the search and every filter in one action (the sort order stays)."""
        controls = (self.search, self.purity_column, self.min_purity, self.min_mass, self.label)
        for control in controls:
            control.unobserve(self._filters_changed, names="value")
        try:
            self.search.value, self.min_purity.value, self.min_mass.value, self.label.value = "", 0.0, 0.0, ANY
            self.purity_column.value = self.purity_column.options[0]
        finally:
            for control in controls:
                control.observe(self._filters_changed, names="value")
        self._filters_changed(None)

    def sort_by(self, column: str) -> None:
        """Sort by ``column``; sorting by the same column again reverses the order."""
        descending = not self.filter.descending if column == self.filter.sort_by else column != "component"
        self.show_page(0, dataclasses.replace(self.filter, sort_by=column, descending=descending))

    def select(self, component: int | None) -> None:
        """Select ``component`` as a click on its number does (None: no selection); sets ``selected``."""
        if component is not None:
            self.explorer.component(component)  # a clear error for a component that is not there
        self.selected = None if component is None else int(component)
        self._mark_selected()

    # -- rendering ---------------------------------------------------------------------

    def _filters_changed(self, _change) -> None:
        self.show_page(0, dataclasses.replace(
            self.filter, search=self.search.value, purity=self.purity_column.value, min_purity=self.min_purity.value,
            min_mass=self.min_mass.value, label=None if self.label.value == ANY else self.label.value))

    def _fill(self, page: ComponentPage) -> None:
        arrow = "▼" if self.filter.descending else "▲"
        for column, header in zip(self.columns, self.headers):
            header.description = f"{column} {arrow}" if column == self.filter.sort_by else column
        rows = list(page.rows.itertuples())
        for k, (button, cells) in enumerate(zip(self.row_buttons, self.cells)):
            visible = k < len(rows)
            button.layout.visibility = "visible" if visible else "hidden"
            for cell in cells:
                cell.layout.visibility = button.layout.visibility
            if not visible:
                button.description, button.tooltip = "", ""
                for cell in cells:
                    cell.value = ""
                continue
            component, *values = rows[k]
            button.description = str(component)
            button.tooltip = f"show component {component}"
            for cell, value in zip(cells, values):
                cell.value = report.format_value(value)
        self.caption.value = report.escape(page.caption())
        self.grid.layout.display = "grid" if page.n_matching else "none"
        if not page.n_matching:
            self.message.value = report.fragment(
                '<div class="note">No component matches these filters: change them or press <b>reset filters</b>.</div>')
        self.previous.disabled = page.page == 0
        self.next.disabled = page.page >= page.n_pages - 1
        self._mark_selected()

    def _mark_selected(self) -> None:
        for button in self.row_buttons:
            button.button_style = "info" if button.description == str(self.selected) else ""

    def _row_clicked(self, button: w.Button) -> None:
        if button.description:
            self.select(int(button.description))

    # -- static display ----------------------------------------------------------------

    def static_html(self) -> str:
        return report.component_page_html(self.current)

    def static_text(self) -> str:
        return repr(self.current)
