"""distexprunner's module layout, for code that imports from its submodules.

Experiment files import from ``distexprunner.parameter_grid``,
``distexprunner.outputs``, ``distexprunner.utils`` and so on, not only from the
package. Renaming the package in such an import must work too, so each of
those module names exists under ``shoal.runner`` and holds the same names as
upstream's module, taken from where they live in shoal. (``server``,
``registry``, ``stdin_controller`` and ``notification`` are shoal modules of
the same names already.)
"""

from __future__ import annotations

import sys
import types
from typing import Any

from shoal.runner import (
    actions,
    command,
    groups,
    handlers,
    params,
    server,
    stdin_controller,
    tables,
    utilities,
)

_LAYOUT: dict[str, dict[str, Any]] = {
    "parameter_grid": {
        "ParameterGrid": params.ParameterGrid,
        "ComputedParam": params.ComputedParam,
    },
    "outputs": {
        "Console": handlers.Console,
        "File": handlers.File,
        "SubstrMatcher": handlers.SubstrMatcher,
        "EnvParser": handlers.EnvParser,
        "CSVGenerator": tables.CSVGenerator,
        "LOG_LEVEL_CMD": utilities.LOG_LEVEL_CMD,
    },
    "utils": {
        "GDB": utilities.GDB,
        "SOCKET_BIND": utilities.SOCKET_BIND,
        "sleep": utilities.sleep,
        "forward_stdin_to": stdin_controller.forward_stdin_to,
        "counter": utilities.counter,
        "log": utilities.log,
        "LOG_LEVEL_CMD": utilities.LOG_LEVEL_CMD,
        "IterClassGen": utilities.IterClassGen,
        "any_failed": groups.any_failed,
        "ProcessGroup": groups.ProcessGroup,
        "run_on_all": groups.run_on_all,
    },
    "enums": {"Action": actions.Action, "ReturnCode": actions.ReturnCode},
    "server_list": {"ServerList": server.ServerList},
    "_exceptions": {"BadReturnCode": command.BadReturnCode},
}


def install(package: str) -> None:
    """Register ``PACKAGE.parameter_grid`` and the others in ``sys.modules``, and as
    attributes of the package (``shoal.runner.outputs.LOG_LEVEL_CMD``, and the star
    import binds them as distexprunner's did)."""
    parent = sys.modules[package]
    for name, names in _LAYOUT.items():
        module = types.ModuleType(f"{package}.{name}", f"distexprunner.{name}'s names in shoal")
        module.__dict__.update(names)
        module.__all__ = [n for n in names if not n.startswith("_")]  # type: ignore[attr-defined]
        sys.modules[module.__name__] = module
        setattr(parent, name, module)
