"""The example viewer: a component's top examples, tokens shaded by the component's token scores."""

from __future__ import annotations

import threading

import ipywidgets as w

from workbench import report
from workbench.app.explore import RunExplorer, TopExamplesPage, check_explorer
from workbench.core.arguments import positive_int

from .static import StaticFallback, error_fragment, on_click_shown


class ExampleViewer(StaticFallback, w.VBox):
    """Pages through one component's examples, largest coefficient first.

    Orange tokens hold a positive share of the component's Fisher mass, blue ones a negative share
    (hover for the share); label, prediction (red when wrong) and the coefficient head each example.

    ``ExampleViewer(explorer, page_size=5)`` takes a :class:`~workbench.app.explore.RunExplorer` and starts
    empty; ``show(j)`` shows the first ``page_size`` examples of component j (``show(j, page)`` another page).
    """

    def __init__(self, explorer: RunExplorer, *, page_size: int = 5):
        self.explorer = check_explorer(explorer, "ExampleViewer(RunExplorer.open(path))")
        self.page_size = positive_int(page_size, "page_size")
        self.component: int | None = None
        self.current: TopExamplesPage | None = None
        self.requests = 0  # shows asked for so far: a show that a later one overtook is not displayed
        self._requests_lock = threading.Lock()
        self.title = w.HTML("<b>Select a component to see its examples.</b>")
        self.previous = w.Button(description="◀ previous", disabled=True, layout=w.Layout(width="110px"))
        self.next = w.Button(description="next ▶", disabled=True, layout=w.Layout(width="110px"))
        self.highlight = w.Checkbox(True, description="highlight tokens", indent=False, layout=w.Layout(width="150px"))
        self.deletion_button = w.Button(description="check by deletion", disabled=True, layout=w.Layout(width="150px"),
                                        tooltip="delete each word of the page's examples in turn and fit the coefficient "
                                                "again: the words it needs, beside the shaded one")
        self.deletion_button.on_click(on_click_shown(self.check_deletions))
        self.deletions: list | None = None  # the page's deletion check: (example, strongest word's place, effects)
        self.status = w.HTML()
        self.body = w.HTML()
        self.previous.on_click(on_click_shown(lambda: self.show(self.component, self.current.page - 1)))
        self.next.on_click(on_click_shown(lambda: self.show(self.component, self.current.page + 1)))
        self.highlight.observe(on_click_shown(lambda: self.show(self.component, self.current.page if self.current else 0)), names="value")
        controls = w.HBox([self.previous, self.next, self.highlight, self.deletion_button, self.status],
                          layout=w.Layout(align_items="center", flex_flow="row wrap"))
        super().__init__([self.title, controls, self.body])
        self.add_class("npeff-example-viewer")

    def show(self, component: int | None, page: int = 0, *, highlight: bool | None = None,
             unless_shown_since: int | None = None) -> TopExamplesPage | None:
        """Show page ``page`` of ``component``'s examples (token scores are computed for the page only;
        ``highlight`` overrides the checkbox for this call). With ``unless_shown_since`` (a count of
        ``requests``), nothing is done once another show was asked for since: a background fill never
        replaces the page the user turned to."""
        with self._requests_lock:
            if unless_shown_since is not None and self.requests != unless_shown_since:
                return None
            self.requests += 1
            request = self.requests
        highlight = self.highlight.value if highlight is None else highlight
        self.component = component
        if component is None:
            return None
        self.status.value = "<i>scoring tokens…</i>" if highlight else ""
        try:
            result = self.explorer.top_examples(component, page=page, page_size=self.page_size,
                                                highlight=highlight)
        except Exception as error:  # shown in the panel: the user sees why, not an empty box
            self.status.value = ""
            self.body.value = error_fragment(error)
            raise
        if request != self.requests:  # a later show (another page, component or highlight) is on its way
            return result
        self.current, self.deletions = result, None
        self.deletion_button.disabled = not self.explorer.has_model
        self.title.value = f"{component_title(self.explorer, component)}: top examples"
        self.body.value = report.examples_page_html(result)
        self.previous.disabled = result.page == 0
        self.next.disabled = result.page >= result.n_pages - 1
        self.status.value = ""
        return result

    def check_deletions(self) -> list:
        """The deletion check of the page shown (``RunExplorer.deletion_effects`` of each example), shown below it;
        returns [(example, strongest word's place, effects)]."""
        if self.current is None:
            raise ValueError("no page shown: select a component first")
        page, request = self.current, self.requests
        self.status.value = "<i>deleting words…</i>"
        try:
            checks = [(e.example, e.strongest_place(self.explorer.texts[e.example]), self.explorer.deletion_effects(page.component, e.example))
                      for e in page.examples]
        except Exception as error:
            self.status.value = error_fragment(error)
            raise
        self.status.value = ""
        if request == self.requests:  # still the page shown
            self.deletions = checks
            self.body.value = report.examples_page_html(page) + report.fragment(report.deletions_html(checks))
        return checks

    def static_html(self) -> str:
        if self.current is None:
            return report.fragment("<i>No component selected.</i>")
        deletions = report.fragment(report.deletions_html(self.deletions)) if self.deletions else ""
        return report.fragment(f"<div>{self.title.value}</div>" + report.examples_page_html(self.current)) + deletions

    def static_text(self) -> str:
        return "No component selected." if self.current is None else repr(self.current)


def component_title(explorer: RunExplorer, component: int, what: str = "Component") -> str:
    """``<b>Component j</b> · its label`` (escaped, isolated: a right-to-left label moved the title's number
    and dot to its other side), the label from the explorer's table when it has one."""
    name = explorer.component_name(component)
    return f"<b>{report.escape(what)} {int(component)}</b>" + (f" · <bdi>{report.escape(name)}</bdi>" if name else "")

