"""``LabeledList``: a list whose items may also be reached by a unique label (Rain's)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, MutableSequence
from typing import Any, Self, TypeVar, overload

__all__ = ["LabeledList"]

T = TypeVar("T")


class LabeledList(MutableSequence[T]):
    """A list indexed from zero whose items may also carry unique labels.

    This is what a task's ``outputs`` is: ``t.outputs[0]`` and ``t.outputs["output1"]``
    reach the same object when the first output is labelled ``"output1"``. It has
    Rain's API: ``data`` and ``labels`` are the two parallel lists, ``in`` tests
    labels, an index or a slice reads ``data`` (a slice gives a plain list), and
    assigning through an index or a slice clears the labels there (``set`` and
    ``set_label`` give one). A label is any hashable value but ``None`` (no label),
    an ``int`` or a ``slice``; using one twice raises ``KeyError``.

    >>> ll = LabeledList([10, 20], labels=["output1", None])
    >>> ll.append(30, label="log")
    >>> ll[0], ll["output1"], ll[-1], ll["log"], "log" in ll
    (10, 10, 30, 30, True)
    >>> ll.labels, ll.get_label(1), ll[1:]
    (['output1', None, 'log'], None, [20, 30])
    >>> ll.set_label(1, "middle"); ll["middle"]
    20
    >>> ll[0] = 11; ll.labels
    [None, 'middle', 'log']
    >>> ll.pop(), ll
    (30, <LabeledList (11, middle: 20)>)
    """

    def __init__(
        self,
        items: Iterable[T] | None = None,
        labels: Iterable[Hashable | None] | None = None,
        pairs: Iterable[tuple[Hashable | None, T]] | None = None,
    ) -> None:
        self.data: list[T] = []
        self.labels: list[Any] = []
        self._index: dict[Any, int] = {}
        if items is not None and pairs is not None:
            raise TypeError("LabeledList takes items (with labels) or pairs, not both")
        if isinstance(items, LabeledList) and labels is None:
            pairs, items = items.items(), None
        if items is not None:
            values = list(items)
            label_list = [None] * len(values) if labels is None else list(labels)
            if len(label_list) != len(values):
                raise ValueError(
                    f"LabeledList got {len(values)} items but {len(label_list)} labels"
                )
            pairs = zip(label_list, values, strict=True)
        for label, value in pairs or ():
            self.append(value, label=label)

    @classmethod
    def of_lists(cls, data: list[T], labels: list[Any]) -> Self:
        """A LabeledList that takes ``data`` and ``labels`` (of the same length) as
        its own lists, without copying them (a task's outputs: made for it)."""
        if len(data) != len(labels):
            raise ValueError(f"LabeledList got {len(data)} items but {len(labels)} labels")
        ll = cls.__new__(cls)
        ll.data, ll.labels, ll._index = data, labels, {}
        for i, label in enumerate(labels):
            ll._claim(label, i)
        return ll

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[Hashable | None, T]]) -> LabeledList[T]:
        """Build from ``(label, value)`` pairs (the same as ``LabeledList(pairs=...)``)."""
        return cls(pairs=pairs)

    # --- labels -----------------------------------------------------------------------

    @staticmethod
    def _check_label(label: object) -> None:
        if isinstance(label, int | slice):
            raise TypeError(f"a LabeledList label may not be an int or a slice: {label!r}")

    def _claim(self, label: Any, index: int) -> None:
        """Make ``label`` name ``index``; ``KeyError`` if another item has it."""
        if label is None:
            return
        self._check_label(label)
        holder = self._index.get(label)
        if holder is not None and holder != index:
            raise KeyError(f"label {label!r} is already in the LabeledList")
        self._index[label] = index

    def _reindex(self) -> None:
        index: dict[Any, int] = {}
        for i, label in enumerate(self.labels):
            if label is None:
                continue
            if label in index:
                raise KeyError(f"label {label!r} is already in the LabeledList")
            index[label] = i
        self._index = index

    def get_label(self, index: int) -> Any:
        """The label of the item at ``index`` (negative counts from the end), or ``None``."""
        return self.labels[index]

    def set_label(self, index: int, label: Hashable | None) -> None:
        """Give the item at ``index`` the label ``label`` (``None`` removes its label)."""
        index = range(len(self.data))[index]
        self._claim(label, index)
        old = self.labels[index]
        if old is not None and old != label:
            del self._index[old]
        self.labels[index] = label

    def set(self, index: int, value: T, label: Hashable | None = None) -> None:
        """Put ``value`` at ``index`` with the label ``label`` (``None``: no label)."""
        index = range(len(self.data))[index]
        self._claim(label, index)
        self[index] = value
        self.set_label(index, label)

    def index_of_label(self, label: Hashable) -> int:
        """The position of the item labelled ``label``; ``KeyError`` naming the labels."""
        try:
            return self._index[label]
        except KeyError:
            known = ", ".join(repr(lb) for lb in self.labels if lb is not None) or "none"
            raise KeyError(f"no item labelled {label!r} (labels: {known})") from None

    def get(self, label: Hashable, default: Any = None) -> T | Any:
        """The item labelled ``label``, or ``default`` when no item has that label."""
        index = self._index.get(label)
        return default if index is None else self.data[index]

    def items(self) -> list[tuple[Any, T]]:
        """``(label, value)`` pairs in order."""
        return list(zip(self.labels, self.data, strict=True))

    # --- the sequence -----------------------------------------------------------------

    def append(self, value: T, label: Hashable | None = None) -> None:
        """Add ``value`` at the end, reachable also as ``self[label]`` when labelled."""
        self._claim(label, len(self.data))
        self.data.append(value)
        self.labels.append(label)

    def insert(self, index: int, value: T, label: Hashable | None = None) -> None:
        """Insert ``value`` before ``index``, with an optional label."""
        if label is not None:
            self._check_label(label)
            if label in self._index:
                raise KeyError(f"label {label!r} is already in the LabeledList")
        self.data.insert(index, value)
        self.labels.insert(index, label)
        self._reindex()

    @overload
    def __getitem__(self, key: int | Hashable) -> T: ...

    @overload
    def __getitem__(self, key: slice) -> list[T]: ...

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int | slice):
            return self.data[key]
        return self.data[self.index_of_label(key)]

    def __setitem__(self, key: Any, value: Any) -> None:
        # Rain's rule: assigning by position replaces the item and clears its label.
        if isinstance(key, slice):
            values = list(value)
            self.data[key] = values
            self.labels[key] = [None] * len(values)
            self._reindex()
            return
        if not isinstance(key, int):
            # Addressed by its label, the item keeps it (Rain silently ignored this).
            self.data[self.index_of_label(key)] = value
            return
        self.data[key] = value
        old = self.labels[key]
        if old is not None:
            del self._index[old]
            self.labels[key] = None

    def __delitem__(self, key: Any) -> None:
        if not isinstance(key, int | slice):
            key = self.index_of_label(key)
        del self.data[key]
        del self.labels[key]
        self._reindex()

    def __contains__(self, label: object) -> bool:
        """Whether some item carries the label ``label`` (Rain's meaning of ``in``)."""
        try:
            return label in self._index
        except TypeError:  # an unhashable value is no label
            return False

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[T]:
        return iter(self.data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabeledList):
            return NotImplemented
        return self.data == other.data and self.labels == other.labels

    __hash__ = None  # type: ignore[assignment]  # mutable, like list

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{label}: {value}" if label is not None else str(value)
            for label, value in self.items()
        )
        return f"<LabeledList ({shown})>"

    def __getstate__(self) -> tuple[list[T], list[Any]]:
        return self.data, self.labels

    def __setstate__(self, state: tuple[list[T], list[Any]]) -> None:
        self.data, self.labels = list(state[0]), list(state[1])
        self._reindex()
