"""Package exports imported on first use (PEP 562), so that importing a package stays light.

``import workbench`` (and ``import widgets``) must not import torch; the names a package
exports from its heavier modules are therefore looked up only when first used::

    __getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), {"compute_pefs": ".runner", ...})
"""

from __future__ import annotations

import importlib


def lazy_exports(package: str, namespace: dict, exports: dict[str, str]):
    """A module ``__getattr__`` and ``__dir__`` for ``package`` whose names ``exports`` maps
    to the (relative) module defining each; a name is imported when first used and then
    kept in ``namespace`` (the package's globals)."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__, sorted(exports)
