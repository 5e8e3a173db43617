"""Files and folders only their owner may read: the database, ``.shoal/``, secrets.

Created with the right mode from the start (``os.open``/``mkdir`` with a mode),
never written first and tightened afterwards: between the two, anyone could
have opened the file, and an open descriptor outlives a later chmod.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: str | Path, *, tighten: bool = False) -> Path:
    """Create ``path`` (and missing parents) as 0700; with ``tighten`` an existing
    folder is made 0700 too (for folders that are shoal's own, like ``.shoal/``)."""
    folder = Path(path)
    missing = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for new in reversed(missing):
        # mkdir's mode is masked by the umask, which only ever removes bits.
        new.mkdir(mode=DIR_MODE, exist_ok=True)
    if tighten and folder.stat().st_mode & 0o777 != DIR_MODE:
        folder.chmod(DIR_MODE)
    return folder


def private_file(path: str | Path) -> Path:
    """Make sure ``path`` exists and is 0600, creating it empty if it is missing."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
            os.fchmod(fd, FILE_MODE)  # an existing file from before this rule
    finally:
        os.close(fd)
    return Path(path)


def write_private(path: str | Path, text: str) -> Path:
    """Write ``text`` to a new 0600 file at ``path`` (an old one is replaced)."""
    target = Path(path)
    # O_CREAT's mode applies only to a new file, and someone may hold the old one open.
    target.unlink(missing_ok=True)
    with open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "w") as out:
        out.write(text)
    return target
