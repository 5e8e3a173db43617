"""Shipping user code to nodes with cloudpickle.

Code from the user's own files (a script, a module beside it, a test module, a
notebook) is pickled by value, because the node cannot import those files; code
from installed packages (shoal's library, the standard library) goes by
reference. By value applies to the modules of the classes named, to the
module a function or class given itself comes from, and to the user's modules
of the functions and classes a function given uses by name (``from helpers
import scale``), followed through the functions found so: the helpers travel
with it. cloudpickle would otherwise send a module-level helper as a reference,
which fails on the node with "No module named ...". A module used as a module
(``import helpers``, then ``helpers.scale``) still goes by reference: by value,
cloudpickle would send all of it.
"""

from __future__ import annotations

import functools
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import CodeType, FunctionType, ModuleType

import cloudpickle

_INSTALLED = {
    Path(p).resolve()
    for key in ("stdlib", "platstdlib", "purelib", "platlib")
    if (p := sysconfig.get_paths().get(key))
}


# Cached because it resolves a path, and it is asked on every task submitted
# with arguments of the user's classes; a module's file does not move.
@functools.cache
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


def _names_in(code: CodeType) -> Iterator[str]:
    """The global names ``code`` and the functions defined in it may read."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _names_in(const)


def _modules_used(fn: FunctionType) -> list[str]:
    """The modules of ``fn`` and of the functions and classes it uses by name,
    followed through those functions, that are the user's own files."""
    found: list[str] = []
    todo, seen = [fn], {id(fn)}
    while todo:
        current = todo.pop()
        module = sys.modules.get(current.__module__)
        if module is None or _is_installed(module):
            continue  # an installed function's helpers are installed too
        if current.__module__ not in found:
            found.append(current.__module__)
        namespace = current.__globals__
        for name in _names_in(current.__code__):
            value = namespace.get(name)
            if isinstance(value, type):
                if value.__module__ not in found:
                    found.append(value.__module__)
            elif isinstance(value, FunctionType) and id(value) not in seen:
                seen.add(id(value))
                todo.append(value)
    return found


def dumps(obj: object, types: Iterable[type] = ()) -> bytes:
    """cloudpickle ``obj``, by value for the user's own modules among those
    ``types`` come from, the one ``obj`` comes from when it is a class, and
    those a function ``obj`` uses (see the module's docstring)."""
    names = [cls.__module__ for cls in types]
    if isinstance(obj, type):
        names.append(obj.__module__)
    elif isinstance(obj, FunctionType):
        names += _modules_used(obj)
    if not names:
        return cloudpickle.dumps(obj)
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
