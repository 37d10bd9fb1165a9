"""ipywidgets panels over the workbench library.

``Workbench.from_run("runs/demo")`` assembles the component browser, the example viewer, the
component dashboard, the perturbation panel and the reverse lookup for one run folder. The panels render what
:class:`workbench.app.explore.RunExplorer` returns and hold no analysis code. Every panel also
displays as static HTML (``text/html``) and text, so notebooks rendered without a widget
manager (nbconvert, GitHub, VS Code without ipywidgets) still show what was on screen.
"""

from .browser import ComponentBrowser
from .dashboard import ComponentDashboard
from .examples import ExampleViewer
from .lookup import LookupPanel
from .model_diff import ModelDiffPanel
from .over_training import OverTrainingPanel
from .perturbation import PerturbationPanel
from .trace import TracePanel
from .workbench import Workbench

__all__ = ["ComponentBrowser", "ComponentDashboard", "ExampleViewer", "LookupPanel", "ModelDiffPanel",
           "OverTrainingPanel", "PerturbationPanel", "TracePanel", "Workbench"]
