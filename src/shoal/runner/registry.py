"""``@reg_exp``: registering experiment functions, in the order they are defined."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.runner.params import ParameterGrid
from shoal.runner.server import ServerList


@dataclass
class ExperimentSpec:
    name: str
    file: Path
    func: Callable[..., Any]
    servers: ServerList
    params: dict[str, Any] = field(default_factory=dict)
    max_restarts: int = 0
    raise_on_rc: bool = True
    run_always: bool = False
    record_name: str = ""  # its record's name in the controller ("": ``name``)

    @property
    def key(self) -> str:
        """Identifies the experiment across runs (for --resume)."""
        return f"{self.file.name}::{self.name}"


def name_records(specs: list[ExperimentSpec]) -> None:
    """Give experiments of the same name from different files records of their own
    (``FILE_STEM.NAME``): one name, one record, and a later run of a name replaces
    the earlier one's."""
    counts = Counter(spec.name for spec in specs)
    for spec in specs:
        spec.record_name = f"{spec.file.stem}.{spec.name}" if counts[spec.name] > 1 else spec.name


REGISTRY: list[ExperimentSpec] = []


def reg_exp(
    servers: ServerList | None = None,
    params: ParameterGrid | None = None,
    max_restarts: int = 0,
    raise_on_rc: bool = True,
    run_always: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an experiment: ``fn(servers, **params)`` runs once per parameter combination.

    ``max_restarts``: how many times in all an experiment that returns
    ``Action.RESTART`` may run (0: no limit). ``raise_on_rc``: a command's
    non-zero return code fails the experiment and stops the run.
    ``run_always``: run even after an earlier experiment stopped the run, and
    again on ``--resume``.
    """
    if not isinstance(servers, ServerList):
        raise TypeError(f"@reg_exp needs servers=ServerList(...), got {servers!r}")
    if params is not None and not isinstance(params, ParameterGrid):
        raise TypeError(f"@reg_exp params must be a ParameterGrid, got {params!r}")
    if not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"max_restarts must be a whole number >= 0, got {max_restarts!r}")
    file = Path(sys._getframe(1).f_code.co_filename).resolve()

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        combos = list(params.combinations()) if params is not None else [{}]
        for combo in combos:
            name = func.__name__ + (f"__{ParameterGrid.suffix(combo)}" if params else "")
            REGISTRY.append(
                ExperimentSpec(
                    name, file, func, servers, combo, max_restarts, raise_on_rc, run_always
                )
            )
        return func

    return register
