"""NPEFF workbench: per-example Fishers, their non-negative factorization, and reading the components."""

__version__ = "0.1.0"

from .fisher import PefConfig, compute_pefs
from .params import ParameterLayout, select_parameters
from .pefs import DPefs, LrmPefs

__all__ = ["__version__", "PefConfig", "compute_pefs", "ParameterLayout", "select_parameters", "DPefs", "LrmPefs"]
