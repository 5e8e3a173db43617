"""A minimal Success/Failure result container."""

from __future__ import annotations

from typing import Any, ClassVar, NoReturn


class UnwrapFailedError(Exception):
    """Raised when unwrapping the wrong side of a :class:`Result`."""

    def __init__(self, halted_container: Result) -> None:
        # keep the container as the only arg so the exception pickles cleanly
        super().__init__(halted_container)
        self.halted_container = halted_container

    def __str__(self) -> str:
        return f"cannot unwrap {self.halted_container!r}"


class Result:
    """Base class of :class:`Success` and :class:`Failure`; immutable."""

    __slots__ = ("_inner_value",)
    __match_args__ = ("_inner_value",)

    _inner_value: Any
    _success: ClassVar[bool] = False

    def __init__(self, inner_value: Any) -> None:
        if type(self) is Result:
            raise TypeError("Result is abstract; use Success(...) or Failure(...)")
        object.__setattr__(self, "_inner_value", inner_value)

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        # immutability keeps __hash__ consistent with __eq__
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable")

    @property
    def is_success(self) -> bool:
        """True for :class:`Success`, False for :class:`Failure`."""
        return self._success

    def unwrap(self) -> Any:
        """Return the success value, or raise :class:`UnwrapFailedError`."""
        if self._success:
            return self._inner_value
        raise UnwrapFailedError(self)

    def failure(self) -> Any:
        """Return the failure error, or raise :class:`UnwrapFailedError`."""
        if not self._success:
            return self._inner_value
        raise UnwrapFailedError(self)

    def value_or(self, default: Any) -> Any:
        """Return the success value, or ``default`` on failure."""
        return self._inner_value if self._success else default

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Result):
            return NotImplemented
        return type(self) is type(other) and self._inner_value == other._inner_value

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._inner_value))

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self._inner_value}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # slots + blocked __setattr__ need an explicit constructor-based reduce
        return (type(self), (self._inner_value,))


class Success(Result):
    """A successful result carrying a value."""

    __slots__ = ()
    _success = True


class Failure(Result):
    """A failed result carrying an error."""

    __slots__ = ()
    _success = False


def is_successful(result: Result) -> bool:
    """Return True if ``result`` is a :class:`Success`."""
    return isinstance(result, Success)
