"""``CSVGenerator``: turning a command's output into CSV rows with named regex groups."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def _number(text: str) -> int | float:
    # distexprunner eval()'d the captured text; numbers are all it ever meant.
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"CSVGenerator: {text!r} is not a number") from None


class _Column:
    """One regex; its named groups become columns. Subclasses decide what a row shows."""

    def __init__(self, regex: str) -> None:
        self.regex = re.compile(regex)
        self._cols: dict[str, Any] = {k: None for k in self.regex.groupindex}

    def keys(self) -> Iterable[str]:
        return self._cols.keys()

    def search(self, line: str) -> None:
        match = self.regex.search(line)
        if match:
            self.found(match.groupdict())

    def found(self, groups: dict[str, str | None]) -> None:
        self._cols.update(groups)

    def cols(self) -> Iterator[tuple[str, str]]:
        for key, value in self._cols.items():
            if value is not None:
                yield key, value


class _Many(_Column):
    """Every match kept, in order."""

    def __init__(self, regex: str) -> None:
        super().__init__(regex)
        self._cols = {k: [] for k in self.regex.groupindex}

    def found(self, groups: dict[str, str | None]) -> None:
        for key, value in groups.items():
            if value is not None:
                self._cols[key].append(value)

    def cols(self) -> Iterator[tuple[str, str]]:
        for key, values in self._cols.items():
            yield key, self.summarize(values)

    def summarize(self, values: list[str]) -> str:
        return "|".join(values)


class _Keyed(_Many):
    """Matches carry a special group (``i`` or ``key``) that is not a column itself."""

    special = ""

    def __init__(self, regex: str) -> None:
        super().__init__(regex)
        if self.special not in self._cols:
            raise ValueError(
                f"CSVGenerator.{type(self).__name__} needs a (?P<{self.special}>...) group "
                f"in {regex!r}"
            )
        del self._cols[self.special]

    def found(self, groups: dict[str, str | None]) -> None:
        tag = groups.pop(self.special)
        for key, value in groups.items():
            if value is not None:
                self._cols[key].append((tag, value))


class CSVGenerator:
    """Collects values from output lines with regexes; gives a CSV ``header`` and ``row``.

    A plain regex keeps the last value each named group matched; the column
    classes (``Array``, ``Sum``, ``Mean``, ``Min``, ``Max``, ``Percentile``,
    ``Optional``, ``SortedArray``, ``GroupedArray``) keep or combine all of them.
    Keyword arguments are fixed columns, first in the header::

        csvs = IterClassGen(CSVGenerator, r"value=(?P<value>\\d+)",
                            CSVGenerator.Array(r"other=(?P<other>\\d+)"), threads=4)
        s.run_cmd("./bench", stdout=next(csvs)).wait()
        for csv in csvs:
            csv.write("results.csv")   # the header once, then a row per generator
    """

    class Default(_Column):
        """The last value matched (a row needs one)."""

    class Optional(_Column):
        """The last value matched, or an empty field."""

        def cols(self) -> Iterator[tuple[str, str]]:
            for key, value in self._cols.items():
                yield key, "" if value is None else value

    class Array(_Many):
        """Every value matched, joined with ``|``."""

    class Sum(_Many):
        """The sum of the values matched (0 for none)."""

        def summarize(self, values: list[str]) -> str:
            return str(sum(_number(v) for v in values))

    class Mean(_Many):
        """The mean of the values matched (0 for none)."""

        def summarize(self, values: list[str]) -> str:
            if not values:
                return "0"
            return str(sum(_number(v) for v in values) / float(len(values)))

    class Max(_Many):
        """The largest value matched (0 for none)."""

        def summarize(self, values: list[str]) -> str:
            return str(max(_number(v) for v in values)) if values else "0"

    class Min(_Many):
        """The smallest value matched (0 for none)."""

        def summarize(self, values: list[str]) -> str:
            return str(min(_number(v) for v in values)) if values else "0"

    class Percentile(_Many):
        """The value at ``percentile`` (0 to 1) of the sorted values matched (0 for none)."""

        def __init__(self, regex: str, percentile: float) -> None:
            if not 0 <= percentile <= 1:
                raise ValueError(f"a percentile is between 0 and 1, got {percentile!r}")
            super().__init__(regex)
            self.percentile = percentile

        def summarize(self, values: list[str]) -> str:
            if not values:
                return "0"
            ordered = sorted(_number(v) for v in values)
            # distexprunner indexed past the end for percentile=1; that means the maximum.
            return str(ordered[min(int(len(ordered) * self.percentile), len(ordered) - 1)])

    class SortedArray(_Keyed):
        """Every value matched, ordered by the ``(?P<i>...)`` group's number, joined with ``|``."""

        special = "i"

        def cols(self) -> Iterator[tuple[str, str]]:
            for key, pairs in self._cols.items():
                ordered = sorted(pairs, key=lambda pair: int(pair[0]))
                yield key, "|".join(value for _, value in ordered)

    class GroupedArray(_Keyed):
        """Every value matched with its ``(?P<key>...)`` group: ``key~value|key~value``."""

        special = "key"

        def cols(self) -> Iterator[tuple[str, str]]:
            for key, pairs in self._cols.items():
                yield key, "|".join(f"{tag}~{value}" for tag, value in pairs)

    def __init__(self, *regexes: Any, **columns: Any) -> None:
        self._header: list[str] = []
        self._fixed: dict[str, str] = {}
        self._columns: list[Any] = []  # _Column or a user's column (_PROTOCOL)
        self.add_columns(**columns)
        # Copies: one list of column objects is shared by every generator IterClassGen makes.
        for item in copy.deepcopy(list(_flatten(regexes))):
            column = self.Default(item) if isinstance(item, str) else item
            # distexprunner took any object with its columns' three methods; so do we.
            missing = [m for m in _PROTOCOL if not callable(getattr(column, m, None))]
            if missing:
                raise TypeError(
                    f"CSVGenerator takes regexes and columns (objects with keys(), cols() "
                    f"and search(line)); {item!r} has no {', '.join(m + '()' for m in missing)}"
                )
            for key in column.keys():  # noqa: SIM118 - a column, not a dict
                self._claim(key)
            self._columns.append(column)

    def _claim(self, key: str) -> None:
        if key in self._header:
            raise ValueError(f"column {key!r} is already in the header {self._header}")
        self._header.append(key)

    def __call__(self, line: str) -> None:
        for column in self._columns:
            column.search(line)

    def add_columns(self, **columns: Any) -> None:
        """Add fixed columns (a parameter of the run, say) with their values."""
        for key, value in columns.items():
            self._claim(key)
            self._fixed[key] = str(value)

    @property
    def header(self) -> str:
        return ",".join(self._header)

    @property
    def as_dict(self) -> dict[str, str]:
        values = {key: value for column in self._columns for key, value in column.cols()}
        values.update(self._fixed)
        missing = [key for key in self._header if key not in values]
        if missing:
            raise ValueError(f"no value for column(s) {', '.join(missing)}: no line matched")
        return {key: values[key] for key in self._header}

    @property
    def row(self) -> str:
        # str(): a user's column may yield numbers.
        return ",".join(str(value) for value in self.as_dict.values())

    def write(self, path: str | os.PathLike[str], *parts: str) -> None:
        """Append the row to a CSV file; a new file gets the header first."""
        target = Path(path, *parts)
        new = not target.exists()
        row = self.row  # before opening: a missing value must not leave a file with a header only
        with open(target, "a", encoding="utf-8") as f:
            if new:
                f.write(self.header + "\n")
            f.write(row + "\n")


# What CSVGenerator calls on a column: the names it adds to the header, a line
# of output to look at, and the (name, text) pairs of a row.
_PROTOCOL = ("keys", "search", "cols")


def _flatten(items: Iterable[Any]) -> Iterator[Any]:
    for item in items:
        if isinstance(item, Iterable) and not isinstance(item, str | bytes):
            yield from _flatten(item)
        else:
            yield item
