"""``LabeledList``: a list whose items may also be reached by a string label."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar, overload

__all__ = ["LabeledList"]

T = TypeVar("T")


class LabeledList(Sequence[T]):
    """A sequence indexed from zero whose items may also carry unique string labels.

    This is what a task's ``outputs`` is: ``t.outputs[0]`` and ``t.outputs["output1"]``
    reach the same object when the first output is labelled ``"output1"``. Items
    without a label are reached by position only. Slices keep their labels.

    >>> ll = LabeledList([10, 20], labels=["output1", None])
    >>> ll.append(30, label="log")
    >>> ll[0], ll["output1"], ll[-1], ll["log"]
    (10, 10, 30, 30)
    >>> ll.labels(), ll.get_label(1)
    (['output1', None, 'log'], None)
    >>> list(ll), len(ll)
    ([10, 20, 30], 3)
    >>> ll
    LabeledList([10, 20, 30], labels=['output1', None, 'log'])

    It is a read-mostly ``collections.abc.Sequence``, not a ``list`` subclass: a
    ``list``'s insert/sort/extend would have to keep the labels in step, and tasks
    never need them. Values can be replaced in place (``ll["log"] = x``), and
    ``append`` adds at the end. A label used twice raises ``ValueError``.
    """

    __slots__ = ("_index", "_labels", "_values")

    def __init__(
        self, values: Iterable[T] = (), labels: Iterable[str | None] | None = None
    ) -> None:
        self._values: list[T] = []
        self._labels: list[str | None] = []
        self._index: dict[str, int] = {}
        values = list(values)
        label_list = [None] * len(values) if labels is None else list(labels)
        if len(label_list) != len(values):
            raise ValueError(f"LabeledList got {len(values)} values but {len(label_list)} labels")
        for value, label in zip(values, label_list, strict=True):
            self.append(value, label)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str | None, T]]) -> LabeledList[T]:
        """Build from ``(label, value)`` pairs; a label of ``None`` leaves an item unlabelled.

        >>> LabeledList.from_pairs([("a", 1), (None, 2)])["a"]
        1
        """
        result: LabeledList[T] = cls()
        for label, value in pairs:
            result.append(value, label)
        return result

    def append(self, value: T, label: str | None = None) -> None:
        """Add ``value`` at the end, reachable also as ``self[label]`` when a label is given."""
        if label is not None:
            if not isinstance(label, str):
                raise TypeError(f"a label is a str or None, not {type(label).__name__}")
            if label in self._index:
                raise ValueError(f"duplicate label {label!r} in LabeledList")
            self._index[label] = len(self._values)
        self._values.append(value)
        self._labels.append(label)

    def labels(self) -> list[str | None]:
        """The labels, position by position (``None`` where an item has none)."""
        return list(self._labels)

    def get_label(self, index: int) -> str | None:
        """The label of the item at ``index`` (negative counts from the end), or ``None``."""
        return self._labels[index]

    def index_of_label(self, label: str) -> int:
        """The position of the item labelled ``label``; ``KeyError`` if there is none."""
        try:
            return self._index[label]
        except KeyError:
            raise KeyError(self._missing(label)) from None

    def has_label(self, label: str) -> bool:
        """Whether some item carries ``label`` (``in`` tests values, as for any sequence)."""
        return label in self._index

    def get(self, label: str, default: Any = None) -> T | Any:
        """The item labelled ``label``, or ``default`` when no item has that label."""
        index = self._index.get(label)
        return default if index is None else self._values[index]

    def items(self) -> list[tuple[str | None, T]]:
        """``(label, value)`` pairs in order (the input of :meth:`from_pairs`)."""
        return list(zip(self._labels, self._values, strict=True))

    def _missing(self, label: str) -> str:
        known = ", ".join(repr(lb) for lb in self._labels if lb is not None) or "none"
        return f"no item labelled {label!r} (labels: {known})"

    def _position(self, key: int | str) -> int:
        if isinstance(key, str):
            return self.index_of_label(key)
        return key

    @overload
    def __getitem__(self, key: int | str) -> T: ...

    @overload
    def __getitem__(self, key: slice) -> LabeledList[T]: ...

    def __getitem__(self, key: int | str | slice) -> T | LabeledList[T]:
        if isinstance(key, slice):
            return LabeledList(self._values[key], self._labels[key])
        return self._values[self._position(key)]

    def __setitem__(self, key: int | str, value: T) -> None:
        # Replaces the value and keeps the label where it was.
        self._values[self._position(key)] = value

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[T]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabeledList):
            return NotImplemented
        return self._values == other._values and self._labels == other._labels

    __hash__ = None  # type: ignore[assignment]  # mutable, like list

    def __repr__(self) -> str:
        if all(label is None for label in self._labels):
            return f"LabeledList({self._values!r})"
        return f"LabeledList({self._values!r}, labels={self._labels!r})"

    def __getstate__(self) -> tuple[list[T], list[str | None]]:
        return self._values, self._labels

    def __setstate__(self, state: tuple[list[T], list[str | None]]) -> None:
        values, labels = state
        self._values, self._labels = list(values), list(labels)
        self._index = {label: i for i, label in enumerate(labels) if label is not None}
