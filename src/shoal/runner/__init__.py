"""The runner front-end: experiments as Python functions driving commands on nodes.

Code written for distexprunner runs by changing its import::

    from shoal.runner import *

    server_list = ServerList(Server("node01", "127.0.0.1", 20000))

    @reg_exp(servers=server_list)
    def ls(servers):
        servers[0].run_cmd("ls").wait()

and is run with ``shoal exp FILE_OR_FOLDER...``. ``from shoal.runner import *``
gives every name ``from distexprunner import *`` gave (docs/runner.md has the table).
"""

from enum import Enum

from shoal.runner import notification, registry, server, stdin_controller, upstream_modules
from shoal.runner.actions import Action, ReturnCode
from shoal.runner.command import BadReturnCode, Command, CommandError
from shoal.runner.groups import ProcessGroup, any_failed, run_on_all
from shoal.runner.handlers import Console, EnvParser, File, SubstrMatcher
from shoal.runner.params import ComputedParam, ParameterGrid
from shoal.runner.registry import reg_exp
from shoal.runner.server import Server, ServerList
from shoal.runner.stdin_controller import StdinController, forward_stdin_to
from shoal.runner.tables import CSVGenerator
from shoal.runner.utilities import GDB, SOCKET_BIND, IterClassGen, counter, log, sleep

# `from distexprunner.parameter_grid import ...` and its siblings, renamed, work too.
upstream_modules.install(__name__)

# Beside the API, what distexprunner's star import bound and code used
# unqualified: `Enum` (its enums module imported it) and its submodules
# (`outputs.LOG_LEVEL_CMD`). As upstream's, they replace a name of yours
# imported *before* the star import (your own `utils` module, say).
__all__ = [
    "GDB",
    "SOCKET_BIND",
    "Action",
    "BadReturnCode",
    "CSVGenerator",
    "Command",
    "CommandError",
    "ComputedParam",
    "Console",
    "Enum",
    "EnvParser",
    "File",
    "IterClassGen",
    "ParameterGrid",
    "ProcessGroup",
    "ReturnCode",
    "Server",
    "ServerList",
    "StdinController",
    "SubstrMatcher",
    "any_failed",
    "counter",
    "enums",
    "forward_stdin_to",
    "log",
    "notification",
    "outputs",
    "parameter_grid",
    "reg_exp",
    "registry",
    "run_on_all",
    "server",
    "server_list",
    "sleep",
    "stdin_controller",
    "utils",
]
