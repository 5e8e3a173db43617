"""A parameter grid: 16 experiments named grid__a=1_b=2_to_file=True and so on."""

import config

from shoal.runner import *  # noqa: F403

server_list = ServerList(  # noqa: F405
    Server("node01", "127.0.0.1", config.SERVER_PORT, optional_field=True),  # noqa: F405
)

parameter_grid = ParameterGrid(  # noqa: F405
    a=range(1, 5),
    b=[2, 4],
    to_file=[True, False],
)


@reg_exp(servers=server_list, params=parameter_grid)  # noqa: F405
def grid(servers, a, b, to_file):
    for s in servers:
        stdout = File("grid.log", append=True)  # noqa: F405
        if not to_file:
            stdout = [stdout, Console(fmt=f"{s.id}: %s")]  # noqa: F405

        s.run_cmd(f"echo {a} {b}", stdout=stdout).wait()
