"""Turns generated source into a real Python module, so tracebacks, inspect, torch.jit.script
and torch.fx see the generated code itself."""

from __future__ import annotations

import linecache
import sys
import types

_COUNTER = [0]


def load_module(source: str, filename: str, stem: str) -> types.ModuleType:
    _COUNTER[0] += 1
    name = f"archlang_generated.{stem}_{_COUNTER[0]}"
    filename = f"{filename[:-1]} #{_COUNTER[0]}>" if filename.endswith(">") else filename
    module = types.ModuleType(name)
    module.__file__ = filename
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    sys.modules[name] = module
    exec(compile(source, filename, "exec"), module.__dict__)
    return module
