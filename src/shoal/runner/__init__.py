"""The runner front-end: experiments as Python functions driving commands on nodes.

Code written for distexprunner runs by changing its import::

    from shoal.runner import *

    server_list = ServerList(Server("node01", "127.0.0.1", 20000))

    @reg_exp(servers=server_list)
    def ls(servers):
        servers[0].run_cmd("ls").wait()

and is run with ``shoal exp FILE_OR_FOLDER...``.
"""

from shoal.runner.actions import Action
from shoal.runner.command import BadReturnCode, Command, CommandError
from shoal.runner.handlers import Console, File, SubstrMatcher
from shoal.runner.params import ComputedParam, ParameterGrid
from shoal.runner.registry import reg_exp
from shoal.runner.server import Server, ServerList
from shoal.runner.utilities import log, sleep

__all__ = [
    "Action",
    "BadReturnCode",
    "Command",
    "CommandError",
    "ComputedParam",
    "Console",
    "File",
    "ParameterGrid",
    "Server",
    "ServerList",
    "SubstrMatcher",
    "log",
    "reg_exp",
    "sleep",
]
