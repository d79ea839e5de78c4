"""The roles' own programs (roles/*/files), loaded as modules for their unit tests."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path


def load(name: str, path: Path):
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module
