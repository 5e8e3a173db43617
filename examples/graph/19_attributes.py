"""Guide, "Attributes 'spec' and 'info'": what was asked and what happened.

``spec`` is fixed at submit; ``info`` is filled by the node that ran the task
and is downloaded by ``update()`` (or ``fetch()``). Remote functions read their
spec and write their info through ``ctx``.
"""

from shoal.graph import Client, remote, tasks


@remote()
def attr_demo(ctx):
    foo = ctx.spec.user["foo"]  # a user-defined attribute of the spec
    ctx.info.user["bar"] = [1, 2, foo]  # a new "user" info attribute
    ctx.debug("Running at governor {}", ctx.info.governor)
    return b"Result"


def main() -> None:
    with Client() as client:  # or Rain's Client("localhost", 7210)
        with client.new_session() as s:
            task = tasks.Execute("sleep 1")
            s.submit()
            s.wait_all()
            task.update()  # download the recent attributes
            print("ran on", task.info.node, "at", task.info.governor)  # node-0 at 127.0.0.1:port
            print("duration >= 1 s:", task.info.duration >= 1.0, "error:", repr(task.info.error))

        with client.new_session() as session:
            task = attr_demo()
            task.spec.user["foo"] = 42
            task.output.keep()
            session.submit()
            session.wait_all()
            task.update()
            print(task.info.user["bar"])  # [1, 2, 42]
            print(task.info.debug)  # Running at governor node-...
            task.output.update()
            print("output size:", task.output.info.size)  # 6


if __name__ == "__main__":
    main()
