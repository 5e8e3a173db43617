"""Finding the experiments in files and folders, in the order the user gave."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from shoal.runner.registry import REGISTRY, ExperimentSpec


class ExperimentDefinitionError(Exception):
    """An experiment file could not be loaded; says which file and why."""


def python_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.py") if "/." not in p.as_posix())
        elif path.is_file():
            found = [path]
        else:
            raise ExperimentDefinitionError(f"{path}: no such file or folder")
        files += [f.resolve() for f in found if f.resolve() not in files]
    return files


def discover(paths: list[Path]) -> list[ExperimentSpec]:
    """Import every file; return the experiments they registered, in order."""
    REGISTRY.clear()
    for index, file in enumerate(python_files(paths)):
        # Experiment files import their neighbours (``import config``).
        folder = str(file.parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(f"shoal_exp_{index}_{file.stem}", file)
        if spec is None or spec.loader is None:
            raise ExperimentDefinitionError(f"{file}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ExperimentDefinitionError(f"{file}: {type(exc).__name__}: {exc}") from exc
    return list(REGISTRY)
