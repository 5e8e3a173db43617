"""What a client sends with a new record so the run can be made again.

Every front-end calls :func:`reproduction` when it creates its record: the
versions of shoal and Python, the client's installed packages, the script that
ran, the source and hash of the Python it ships to nodes, and its parameters.
The controller adds the node inventory it sees at that moment.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import inspect
import platform
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import shoal

# Sources beyond this many characters are cut: a record stays a record, not an archive.
MAX_SOURCE = 256 * 1024


@functools.cache
def packages() -> tuple[str, ...]:
    """``name==version`` of every distribution installed for this Python, sorted."""
    found = set()
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            found.add(f"{name}=={dist.version}")
    return tuple(sorted(found, key=str.lower))


def sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _clean(text: str) -> str:
    # The store's text columns (PostgreSQL) cannot hold NUL.
    return text.replace("\x00", "\\x00")


def _file_source(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    return {
        "path": str(path),
        "sha256": sha256(text),
        "source": _clean(text[:MAX_SOURCE]),
        "truncated": len(text) > MAX_SOURCE,
    }


def script() -> dict[str, Any] | None:
    """The file this process runs (``python script.py`` or a console entry point)."""
    main = sys.modules.get("__main__")
    file = getattr(main, "__file__", None)
    if not file:
        return None
    path = Path(file).resolve()
    return _file_source(path) if path.suffix == ".py" else {"path": str(path)}


def module_sources(modules: Iterable[ModuleType]) -> list[dict[str, Any]]:
    """The source of modules whose code is shipped by value (the user's own files)."""
    out = []
    seen: set[str] = set()
    for module in modules:
        try:
            file = inspect.getsourcefile(module)
        except TypeError:
            continue
        if file and file not in seen:
            seen.add(file)
            found = _file_source(Path(file))
            if found is not None:
                found["module"] = module.__name__
                out.append(found)
    return out


def reproduction(
    parameters: dict[str, Any] | None = None,
    *,
    code: bytes | None = None,
    shipped: Iterable[ModuleType] = (),
) -> dict[str, Any]:
    """The reproduction record of a new run.

    ``code`` is what is shipped to the nodes (its SHA-256 is the code hash;
    without it, the script's source is hashed); ``shipped`` the modules whose
    source goes by value; ``parameters`` the run's own (JSON-able) settings.
    """
    main = script()
    sources = module_sources(shipped)
    if code is not None:
        code_hash = sha256(code)
    else:
        texts = [s["sha256"] for s in ([main] if main and "sha256" in main else []) + sources]
        code_hash = sha256("\n".join(texts)) if texts else None
    return {
        "code_hash": code_hash,
        "script": main,
        "sources": sources,
        "parameters": parameters or {},
        "argv": [_clean(a) for a in sys.argv],
        "shoal_version": shoal.__version__,
        "python_version": platform.python_version(),
        "python": sys.executable,
        "platform": platform.platform(),
        "packages": list(packages()),
    }
