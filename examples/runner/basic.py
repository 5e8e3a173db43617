"""distexprunner's first examples, on shoal: run with `shoal exp examples/runner/`."""

import config

from shoal.runner import *  # noqa: F403

server_list = ServerList(  # noqa: F405
    Server("node01", "127.0.0.1", config.SERVER_PORT, optional_field=True),  # noqa: F405
)


@reg_exp(servers=server_list)  # noqa: F405
def ls(servers):
    servers[0].run_cmd("ls").wait()


@reg_exp(servers=server_list)  # noqa: F405
def kill_yes(servers):
    for s in servers[lambda s: s.optional_field == True]:  # noqa: E712
        yes_cmd = s.run_cmd("yes > /dev/null")
        sleep(3)  # not time.sleep()!  # noqa: F405
        yes_cmd.kill()
