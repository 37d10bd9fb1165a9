"""NPEFF workbench: per-example Fishers, their non-negative factorization, and reading the components.

The data flows one way: model + examples (``models``) → per-example Fishers (``fisher``,
run batch by batch by ``runner``) → PEF stores on disk (``store``) → decompositions
(``npeff``) → tables, perturbations, highlights (``analysis``) → run folders, the explorer
and the command line (``app``) → ``widgets``. Each package imports only the layers below
it (docs/design.md, "Layers"; tests/test_layers.py checks it).

The names below are imported when first used (PEP 562), so ``import workbench`` stays
light: nothing imports torch until a PEF, a fit or a model is asked for.
"""

__version__ = "0.1.0"

from .core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), {
    # PEFs: computed in memory or streamed to a store, and the records that hold them
    "compute_pefs": ".runner",
    "write_pefs": ".runner",
    "PefConfig": ".fisher",
    "LrmPefs": ".core.pefs",
    "DPefs": ".core.pefs",
    "ParameterLayout": ".core.params",
    "select_parameters": ".core.params",
    "PefStore": ".store",
    "load_pefs": ".store",
    "save_pefs": ".store",
    "StoreError": ".store",
    # decompositions
    "LrmNpeff": ".npeff",
    "DNpeff": ".npeff",
    # reading a run
    "Run": ".app",
    "RunExplorer": ".app",
    "run_embedded": ".app",
    "run_model": ".app",
    "compare_runs": ".app",
})
__all__ = ["__version__", *__all__]
