"""Shipping user code to nodes with cloudpickle.

Classes from the user's own files (a script, a test module, a notebook) are
pickled by value, because the node cannot import them; classes from installed
packages (shoal's library, the standard library) go by reference.
"""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import cloudpickle

_INSTALLED = {
    Path(p).resolve()
    for key in ("stdlib", "platstdlib", "purelib", "platlib")
    if (p := sysconfig.get_paths().get(key))
}


def _is_installed(module: ModuleType) -> bool:
    if module.__name__ in ("__main__", "__mp_main__"):
        return False
    if module.__name__.split(".")[0] in ("shoal", *sys.builtin_module_names):
        return True
    file = getattr(module, "__file__", None)
    if file is None:
        return True
    path = Path(file).resolve()
    return any(root in path.parents for root in _INSTALLED)


def dumps(obj: object, types: Iterable[type] = ()) -> bytes:
    """cloudpickle ``obj``, by value for the modules that ``types`` come from."""
    registered = []
    for cls in types:
        module = sys.modules.get(cls.__module__)
        if module is None or _is_installed(module) or module in registered:
            continue
        cloudpickle.register_pickle_by_value(module)
        registered.append(module)
    try:
        return cloudpickle.dumps(obj)
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)


def loads(data: bytes) -> object:
    return cloudpickle.loads(data)
