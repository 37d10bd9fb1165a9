"""The application: run folders, the explorer the panels read from, the main job, notebooks, the command line.

- :mod:`.run_folder`: a run folder and its record (:class:`Run`, :class:`RunRecorder`, :func:`compare_runs`);
- :mod:`.explore`: :class:`RunExplorer`, the one object panels, notebooks and HTML reports read from;
- :mod:`.results`: the result objects it returns (component pages, examples, dashboards, lookups);
- :mod:`.pipeline`: :func:`run_embedded`, the main job on the embedded default;
- :mod:`.model_run`: :func:`run_model`, the same for a model and texts of one's own;
- :mod:`.notebook`: running a notebook headless, checking its parameters;
- :mod:`.cli`: ``python -m workbench demo|pefs|fit|transform|run``.

The names below are imported when first used: opening a run folder needs no torch.
"""

from ..core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), {
    **dict.fromkeys(["Run", "RunRecorder", "compare_runs", "read_run_record"], ".run_folder"),
    **dict.fromkeys(["RunExplorer"], ".explore"),
    **dict.fromkeys(["ComponentDashboard", "ComponentFilter", "ComponentPage", "HighlightedExample", "Lookup",
                     "TopExamplesPage"], ".results"),
    **dict.fromkeys(["run_embedded", "summary_text"], ".pipeline"),
    **dict.fromkeys(["run_model"], ".model_run"),
    **dict.fromkeys(["check_parameters", "run_notebook"], ".notebook"),
})
