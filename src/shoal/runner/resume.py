"""Which experiments finished in an earlier run: ``.shoal/runner-state.json`` by the files."""

from __future__ import annotations

import json
import time
from pathlib import Path

from shoal.private import private_dir
from shoal.runner.registry import ExperimentSpec

STATE = Path(".shoal") / "runner-state.json"


class ResumeState:
    def __init__(self, specs: list[ExperimentSpec], resume: bool) -> None:
        self._files = {spec.file.parent / STATE for spec in specs}
        self._done: dict[Path, dict[str, float]] = {}
        for path in self._files:
            self._done[path] = self._load(path) if resume else {}
            if not resume:
                self._save(path)  # a fresh run starts a fresh record

    @staticmethod
    def _load(path: Path) -> dict[str, float]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): float(v) for k, v in data.get("finished", {}).items()}

    def _save(self, path: Path) -> None:
        private_dir(path.parent)  # .shoal/ is 0700, whoever creates it first
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"finished": self._done.get(path, {})}, indent=1))
        tmp.replace(path)

    def finished(self, spec: ExperimentSpec) -> bool:
        return spec.key in self._done.get(spec.file.parent / STATE, {})

    def mark(self, spec: ExperimentSpec) -> None:
        path = spec.file.parent / STATE
        self._done.setdefault(path, {})[spec.key] = time.time()
        self._save(path)
