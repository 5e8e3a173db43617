"""Flag values shared between tasks of one experiment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class FlagValues:
    """The value of an experiment flag: an optional text part and an optional int part."""

    text_value: str | None = None
    int_value: int | None = None

    def __post_init__(self) -> None:
        if self.text_value is not None and not isinstance(self.text_value, str):
            raise TypeError(
                f"text_value must be a str or None, got {type(self.text_value).__name__}"
            )
        # bool is an int subclass, but True as a counter is almost always a mistake
        if self.int_value is not None and (
            isinstance(self.int_value, bool) or not isinstance(self.int_value, int)
        ):
            raise TypeError(
                f"int_value must be an int or None, got {type(self.int_value).__name__}"
            )

    def __str__(self) -> str:
        return f"text_value={self.text_value!r} int_value={self.int_value!r}"

    def to_dict(self) -> dict[str, Any]:
        """Return ``{'text_value': ..., 'int_value': ...}``."""
        return {"text_value": self.text_value, "int_value": self.int_value}

    # netUnicorn's FlagValues is a pydantic model: code written for it calls
    # these (``dict()`` in pydantic 1, ``model_dump()`` in pydantic 2).
    def dict(self) -> dict[str, Any]:
        """The same as :meth:`to_dict` (pydantic 1's name)."""
        return self.to_dict()

    def model_dump(self) -> dict[str, Any]:
        """The same as :meth:`to_dict` (pydantic 2's name)."""
        return self.to_dict()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlagValues:
        """Build from :meth:`to_dict` output; missing keys default to None."""
        return cls(text_value=data.get("text_value"), int_value=data.get("int_value"))
