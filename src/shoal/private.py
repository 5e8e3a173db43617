"""Files and folders only their owner may read: the database, ``.shoal/``, tokens, credentials.

Created with the right mode from the start (``os.open``/``mkdir`` with a mode),
never written first and tightened afterwards: between the two, anyone could
have opened the file, and an open descriptor outlives a later chmod.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

log = logging.getLogger("shoal")

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
    """Write ``text`` to ``path`` as a 0600 file, replacing an old one whole.

    The text goes to a temporary file created 0600 beside it, which is then
    renamed over ``path``: no reader ever sees the file half written or with a
    wider mode, and whoever held the old file open keeps only the old one.
    Missing folders on the way are made 0700.
    """
    target = Path(path)
    private_dir(target.parent)
    # mkstemp creates the file with mode 0600, before anything is written to it.
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def read_private(path: str | Path) -> str:
    """The secret in ``path``, surrounding white space removed.

    Raises ValueError naming the file if it cannot be read or is empty; warns if
    other users may read it.
    """
    source = Path(path)
    try:
        mode = source.stat().st_mode
        text = source.read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read {source}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{source} is not a text file") from None
    if not text:
        raise ValueError(f"{source} is empty")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s can be read by other users (mode %o); make it 0600", source, mode & 0o777)
    return text
