"""A minimal Success/Failure result container, shaped like ``returns``' Result."""

from __future__ import annotations

from collections.abc import Callable
from types import GenericAlias
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

    # ``Success[str]``, ``Result[int, str]``: annotations written for ``returns``
    # subscript its containers, so ours must be subscriptable too.
    __class_getitem__ = classmethod(GenericAlias)

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

    def map(self, function: Callable[[Any], Any]) -> Result:
        """``Success(function(value))`` for a Success; a Failure is returned as it is."""
        return Success(function(self._inner_value)) if self._success else self

    def bind(self, function: Callable[[Any], Result]) -> Result:
        """``function(value)`` (itself a Result) for a Success; a Failure as it is."""
        return _checked(function(self._inner_value), "bind") if self._success else self

    def alt(self, function: Callable[[Any], Any]) -> Result:
        """``Failure(function(error))`` for a Failure; a Success is returned as it is."""
        return self if self._success else Failure(function(self._inner_value))

    def lash(self, function: Callable[[Any], Result]) -> Result:
        """``function(error)`` (itself a Result) for a Failure; a Success as it is."""
        return self if self._success else _checked(function(self._inner_value), "lash")

    def swap(self) -> Result:
        """A Success becomes a Failure with the same inner value, and the reverse."""
        return Failure(self._inner_value) if self._success else Success(self._inner_value)

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


def _checked(value: object, method: str) -> Result:
    # A function that forgot to wrap its value would otherwise pass silently
    # through bind/lash and fail far away, at someone's unwrap().
    if not isinstance(value, Result):
        raise TypeError(
            f"the function given to {method}() must return a Success or a Failure, "
            f"got {value!r} of type {type(value).__name__}"
        )
    return value


def is_successful(result: Result | ResultWithLogs) -> bool:
    """Return True if ``result`` is a :class:`Success` (or a deployment's
    ``(Success, logs)`` pair)."""
    if isinstance(result, ResultWithLogs):
        result = result.result
    return isinstance(result, Success)


class ResultWithLogs(tuple[Result, list[str]]):
    """A deployment's outcome: the pair ``(result, logs)`` that netUnicorn code
    unpacks (``result, log = report.result``), which also answers the
    :class:`Result` methods itself (``report.result.unwrap()``,
    ``.is_success``, ``.failure()``, ...) by handing them to ``result``.

    ``logs`` is a list of the deployment's log lines (str).
    """

    __slots__ = ()

    def __new__(cls, result: Result, logs: list[str] | None = None) -> ResultWithLogs:
        if not isinstance(result, Result):
            raise TypeError(f"expected a Success or a Failure, got {type(result).__name__}")
        return super().__new__(cls, (result, list(logs) if logs is not None else []))

    def __getnewargs__(self) -> tuple[Result, list[str]]:  # type: ignore[override]
        # tuple's own would pass the pair as one argument to __new__
        return (self[0], self[1])

    @property
    def result(self) -> Result:
        """The deployment's :class:`Success` or :class:`Failure`."""
        return self[0]

    @property
    def logs(self) -> list[str]:
        """The deployment's log lines."""
        return self[1]

    @property
    def is_success(self) -> bool:
        """True if the result is a :class:`Success`."""
        return self[0].is_success

    def unwrap(self) -> Any:
        """The result's success value (see :meth:`Result.unwrap`)."""
        return self[0].unwrap()

    def failure(self) -> Any:
        """The result's failure error (see :meth:`Result.failure`)."""
        return self[0].failure()

    def value_or(self, default: Any) -> Any:
        """The result's success value, or ``default`` (see :meth:`Result.value_or`)."""
        return self[0].value_or(default)

    def map(self, function: Callable[[Any], Any]) -> Result:
        """See :meth:`Result.map`."""
        return self[0].map(function)

    def bind(self, function: Callable[[Any], Result]) -> Result:
        """See :meth:`Result.bind`."""
        return self[0].bind(function)

    def alt(self, function: Callable[[Any], Any]) -> Result:
        """See :meth:`Result.alt`."""
        return self[0].alt(function)

    def lash(self, function: Callable[[Any], Result]) -> Result:
        """See :meth:`Result.lash`."""
        return self[0].lash(function)

    def swap(self) -> Result:
        """See :meth:`Result.swap`."""
        return self[0].swap()

    def __getattr__(self, name: str) -> Any:
        # Anything else a Result has (``_inner_value``, ...) comes from the result,
        # so code written when this was a bare Result keeps working.
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self[0], name)
