"""Load one of scripts/*.py (they are programs, not a package) as a module the tests can call into."""

import importlib.util
from types import ModuleType

from tests.support.services import ROOT


def load_script(name: str) -> ModuleType:
    """`load_script("check_import_cycles")`: scripts/check_import_cycles.py as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"scripts/{name}.py cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
