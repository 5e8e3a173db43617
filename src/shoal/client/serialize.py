"""Shipping user code to nodes with cloudpickle.

Code from the user's own files (a script, a module beside it, a test module, a
notebook) is pickled by value, because the node cannot import those files; code
from installed packages (shoal's library, the standard library) goes by
reference. By value applies to the modules of the classes named, and to the
module a function or class given itself comes from: the helpers it calls there
travel with it (cloudpickle would otherwise send a module-level helper as a
reference, which fails on the node with "No module named ...").
"""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path
from types import FunctionType, ModuleType

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
    """cloudpickle ``obj``, by value for the modules of the user's own that
    ``types`` come from, and that ``obj`` comes from when it is a function or a
    class."""
    names = [cls.__module__ for cls in types]
    if isinstance(obj, FunctionType | type):
        names.append(obj.__module__)
    registered = []
    # A module the user registered themselves stays registered after this call.
    theirs = cloudpickle.list_registry_pickle_by_value()
    for name in names:
        module = sys.modules.get(name)
        if module is None or name in theirs or _is_installed(module) or module in registered:
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
