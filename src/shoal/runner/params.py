"""Parameter grids: the cartesian product of parameter lists, in the order given."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class ComputedParam:
    """A parameter whose values are computed from the parameters before it::

    ParameterGrid(threads=[1, 2, 4], clients=ComputedParam(lambda threads: [threads, threads * 2]))
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.arguments = list(inspect.signature(fn).parameters)

    def values(self, earlier: dict[str, Any]) -> list[Any]:
        missing = [a for a in self.arguments if a not in earlier]
        if missing:
            raise ValueError(
                f"ComputedParam needs {', '.join(missing)}, which must come before it in the grid"
            )
        result = self.fn(**{a: earlier[a] for a in self.arguments})
        return _as_values(result)


def _as_values(value: Any) -> list[Any]:
    if isinstance(value, Iterable) and not isinstance(value, str | bytes | dict):
        return list(value)
    return [value]


class ParameterGrid:
    """Every combination of the given values; the experiment runs once per combination.

    ``ParameterGrid(a=range(1, 5), b=[2, 4])`` gives ``a=1,b=2``, ``a=1,b=4``, ``a=2,b=2``...
    and names them ``NAME__a=1_b=2`` and so on.
    """

    def __init__(self, **params: Any) -> None:
        self.params = params

    def combinations(self) -> Iterator[dict[str, Any]]:
        combos: list[dict[str, Any]] = [{}]
        for key, pool in self.params.items():
            grown = []
            for combo in combos:
                values = pool.values(combo) if isinstance(pool, ComputedParam) else _as_values(pool)
                if not values:
                    grown.append(combo)  # an empty list leaves the parameter out
                grown.extend({**combo, key: v} for v in values)
            combos = grown
        yield from combos

    @staticmethod
    def suffix(combo: dict[str, Any]) -> str:
        return "_".join(f"{k}={v}" for k, v in combo.items())

    def get(self) -> Iterator[tuple[dict[str, Any], str]]:
        """Each combination with its name suffix, as distexprunner's grid gave them."""
        for combo in self.combinations():
            yield combo, self.suffix(combo)

    def __len__(self) -> int:
        return sum(1 for _ in self.combinations())
