"""Timeouts, restarts and groups of commands (distexprunner's restart example, and
its ProcessGroup, run_on_all and EnvParser helpers)."""

import config

from shoal.runner import *  # noqa: F403

server_list = ServerList(Server("node01", "127.0.0.1", config.SERVER_PORT))  # noqa: F405
attempts = counter(1)  # noqa: F405


@reg_exp(servers=server_list, max_restarts=3, raise_on_rc=False)  # noqa: F405
def restart_on_timeout(servers):
    attempt = next(attempts)
    # Slow on the first two attempts: the command runs out of time and is killed.
    seconds = 30 if attempt < 3 else 0
    procs = ProcessGroup()  # noqa: F405
    for s in servers:
        procs.add(s.run_cmd(f"sleep {seconds}", timeout=0.5))
    if procs.has_timeout():
        log(f"attempt {attempt} timed out: {procs.wait(verify_rc=False)}")  # noqa: F405
        return Action.RESTART  # noqa: F405
    log(f"attempt {attempt} finished in time")  # noqa: F405


@reg_exp(servers=server_list)  # noqa: F405
def environment(servers):
    assert run_on_all(servers, "true") == [0] * len(servers)  # noqa: F405
    for s in servers:
        env = EnvParser()  # noqa: F405
        s.run_cmd("env", stdout=env, env={"OMP_NUM_THREADS": 8}).wait()
        log(f"{s.id}: OMP_NUM_THREADS={env['OMP_NUM_THREADS']}")  # noqa: F405
