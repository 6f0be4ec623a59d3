"""archlang: a declarative language for neural-network architectures, and its compiler."""

from archlang.api import Network, Program, compile, compile_file  # noqa: A004
from archlang.backends.weights import WeightsMismatch, load_weights
from archlang.errors import ArchError
from archlang.importer import from_torch  # imports torch only when called

__all__ = ["ArchError", "Network", "Program", "WeightsMismatch", "compile", "compile_file", "from_torch",
           "load_weights"]
__version__ = "0.1.0"
