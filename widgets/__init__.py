"""ipywidgets panels over the workbench library (see the widgets issue)."""
