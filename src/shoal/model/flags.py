"""Flag values shared between tasks of one experiment."""

from __future__ import annotations

import json as _json
import math
from dataclasses import dataclass
from typing import Any


@dataclass
class FlagValues:
    """The value of an experiment flag: an optional text part and an int part.

    As netUnicorn's (a pydantic model), ``int_value`` is 0 unless given, and
    values are converted the way pydantic converts them: ``int_value="3"`` or
    ``3.0`` is 3, ``text_value=b"x"`` is ``"x"``; what cannot be converted
    (``"x"``, ``3.5``, a list) is an error naming the field. Two departures:
    ``int_value=None`` is 0 (the wire's "no number"; pydantic would refuse
    it), and ``True``/``False`` are refused as a count (pydantic would take
    them as 1 and 0, which is almost always a mistake).
    """

    text_value: str | None = None
    int_value: int = 0

    def __post_init__(self) -> None:
        self.text_value = _text(self.text_value)
        self.int_value = _integer(self.int_value)

    def __str__(self) -> str:
        return f"text_value={self.text_value!r} int_value={self.int_value!r}"

    def to_dict(self) -> dict[str, Any]:
        """Return ``{'text_value': ..., 'int_value': ...}``."""
        return {"text_value": self.text_value, "int_value": self.int_value}

    # netUnicorn's FlagValues is a pydantic model: code written for it calls
    # pydantic's methods (``dict()``/``json()`` in pydantic 1, ``model_*`` in 2).
    def dict(self) -> dict[str, Any]:
        """The same as :meth:`to_dict` (pydantic 1's name)."""
        return self.to_dict()

    def model_dump(self) -> dict[str, Any]:
        """The same as :meth:`to_dict` (pydantic 2's name)."""
        return self.to_dict()

    def json(self) -> str:
        """The values as compact JSON, ``{"text_value":"a","int_value":0}`` (pydantic 1's name)."""
        return _json.dumps(self.to_dict(), separators=(",", ":"))

    def model_dump_json(self) -> str:
        """The same as :meth:`json` (pydantic 2's name)."""
        return self.json()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlagValues:
        """Build from :meth:`to_dict` output; a missing ``text_value`` is None,
        a missing ``int_value`` 0, other keys are ignored (as pydantic does)."""
        if not isinstance(data, dict):
            raise TypeError(f"FlagValues are built from a dict, got {type(data).__name__}")
        return cls(text_value=data.get("text_value"), int_value=data.get("int_value"))

    @classmethod
    def model_validate(cls, obj: FlagValues | dict[str, Any]) -> FlagValues:
        """A FlagValues from a dict (or a FlagValues), as pydantic 2's ``model_validate``."""
        if isinstance(obj, FlagValues):
            return cls(obj.text_value, obj.int_value)
        return cls.from_dict(obj)

    parse_obj = model_validate  # pydantic 1's name


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            raise ValueError(f"text_value {value!r} is not valid UTF-8") from None
    raise TypeError(f"text_value must be a str or None, got {type(value).__name__} {value!r}")


def _integer(value: object) -> int:
    if value is None:
        return 0
    # bool is an int subclass, but True as a counter is almost always a mistake
    if isinstance(value, bool):
        raise TypeError(f"int_value must be an int, got the bool {value!r}")
    if isinstance(value, int):
        return int(value)  # an int subclass (IntEnum, numpy-like) becomes a plain int
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(f"int_value must be a whole number, got {value!r}")
        return int(value)
    if isinstance(value, str | bytes | bytearray):
        text = value.decode() if isinstance(value, bytes | bytearray) else value
        try:
            return int(text.strip())
        except ValueError:
            pass
        try:
            number = float(text.strip())
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or not number.is_integer():
            raise ValueError(f"int_value must be a whole number, got {value!r}")
        return int(number)
    raise TypeError(f"int_value must be an int, got {type(value).__name__} {value!r}")
