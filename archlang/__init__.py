"""archlang: a declarative language for neural-network architectures, and its compiler.

The public names are loaded on first use (PEP 562), so that `archc --version` and `--help`,
which import this package first, do not load the compiler."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from archlang.api import Network, Program, compile, compile_file  # noqa: A004
    from archlang.backends.weights import WeightsMismatch, load_weights
    from archlang.errors import ArchError
    from archlang.importer import from_torch

__all__ = ["ArchError", "Network", "Program", "WeightsMismatch", "compile", "compile_file", "from_torch",
           "load_weights"]
__version__ = "0.1.0"

_HOME = {"Network": "archlang.api", "Program": "archlang.api", "compile": "archlang.api",
         "compile_file": "archlang.api", "WeightsMismatch": "archlang.backends.weights",
         "load_weights": "archlang.backends.weights", "ArchError": "archlang.errors",
         "from_torch": "archlang.importer"}  # the importer imports torch only when called


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'archlang' has no attribute '{name}'")
    value = getattr(import_module(_HOME[name]), name)
    globals()[name] = value  # the next lookup finds it directly
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
