"""Files that hold a secret (join token, node credential): created 0600, never chmod'ed.

A file is written under a temporary name that is created with mode 0600 and
then renamed over the target, so no reader ever sees it with a wider mode or
half written, and an existing file with a wider mode is replaced, not reused.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

log = logging.getLogger("shoal")


def write_secret(path: str | Path, secret: str) -> Path:
    """Write ``secret`` (and a newline) to ``path``, mode 0600; its folder is made 0700."""
    target = Path(path)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkstemp creates the file with mode 0600, before anything is written to it.
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secret + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def read_secret(path: str | Path) -> str:
    """The secret in ``path`` (surrounding white space removed).

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
