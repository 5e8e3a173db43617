"""Guide, "Resources": the number of cpus a task reserves.

The guide reserves 4 cpus; a local cluster on a small machine may not have 4
per node, so this asks for at most what this machine has.
"""

import os

from shoal.graph import Client, remote, tasks

CPUS = max(1, min(4, os.cpu_count() or 1))


@remote(cpus=CPUS)  # a Python task that reserves CPUS cpus
def myfunction(ctx):
    return str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def main() -> None:
    # Client() uses SHOAL_ENDPOINT, else a local cluster; Rain's
    # Client("localhost", 7210) works too.
    with Client() as client, client.new_session() as session:
        # A program that reserves CPUS cpus ("a-parallel-program" in the guide).
        program = tasks.Execute(["nproc"], cpus=CPUS, stdout=True)
        python = myfunction()
        print("reserved:", program.spec.resources, python.spec.resources)
        session.submit()
        session.wait_all()
        print("both tasks finished")


if __name__ == "__main__":
    main()
