"""Static parts of a panel's display bundle, for front ends without a widget manager."""

from __future__ import annotations

import traceback

from workbench import report


class StaticFallback:
    """Mix into an ipywidgets container: its display bundle gains ``text/html`` and a useful
    ``text/plain``. JupyterLab shows the live widget (the widget view ranks first); nbconvert
    without widget state, GitHub and VS Code without ipywidgets show the HTML snapshot of what
    the panel showed when it was displayed."""

    def static_html(self) -> str:
        """What the panel shows, as self-contained HTML (every text escaped)."""
        raise NotImplementedError

    def static_text(self) -> str:
        """What the panel shows, as plain text."""
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs) -> dict:
        bundle = dict(super()._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = self.static_text()
        bundle["text/html"] = self.static_html()
        return bundle


def on_click_shown(action):
    """A click handler for ``action``, which shows its own errors in its panel: the error is
    not raised again into the kernel's log, where nobody would look for it."""

    def handler(*_):
        try:
            action()
        except Exception:  # noqa: BLE001 - already shown in the panel by ``action``
            pass

    return handler


def error_fragment(error: Exception) -> str:
    """``error`` as a panel shows it. The library refuses bad input with a ValueError or TypeError
    that names the problem and the fix: a traceback under one read as the panel failing. Any other
    error is a fault, and keeps its traceback (folded) for the bug report."""
    refused = isinstance(error, (TypeError, ValueError))
    return report.fragment(report.error_html(f"{type(error).__name__}: {error}",
                                             "" if refused else traceback.format_exc()))
