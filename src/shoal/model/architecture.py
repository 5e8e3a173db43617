"""Node architectures, named as netUnicorn names them."""

from __future__ import annotations

from enum import StrEnum


class Architecture(StrEnum):
    """The architectures netUnicorn knows (``netunicorn.base.architecture``).

    A member is also its string (and hashes as it), so
    ``node.architecture == Architecture.LINUX_ARM64`` holds whether
    ``node.architecture`` is the member or ``"linux/arm64"``; ``str()`` of a
    member is its value (netUnicorn's prints ``Architecture.LINUX_ARM64``).
    A shoal node reports ``linux/amd64`` or ``linux/arm64`` on those machines;
    others keep the string their agent sent (e.g. ``linux/arm/v7``), which
    equals no member here (netUnicorn would call them ``UNKNOWN``).
    """

    LINUX_AMD64 = "linux/amd64"
    LINUX_ARM64 = "linux/arm64"
    WINDOWS_AMD64 = "win/amd64"
    WINDOWS_ARM64 = "win/arm64"
    UNKNOWN = "unknown"


def as_architecture(value: str) -> Architecture | str:
    """``value`` as an :class:`Architecture` member if it names one, else as given."""
    try:
        return Architecture(value)
    except ValueError:
        return value
