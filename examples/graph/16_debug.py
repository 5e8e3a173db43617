"""Guide, "Python tasks / Debug stream" and "Sessions / Overview" (failures).

``ctx.debug(...)`` lines go to the task's ``info.debug`` and into the error when
the task fails. A failed task fails its session: later calls in it raise
``SessionException``; other sessions carry on.
"""

from shoal.graph import Client, SessionException, TaskException, remote


@remote()
def remote_fn(ctx):
    a = 11
    b = a + 10
    ctx.debug("Variable a = {}", a)
    ctx.debug("Variable b = {}", b)
    raise Exception("Error occured!")


@remote()
def chatty(ctx):
    ctx.debug("starting")
    ctx.debug("done after {} steps", 3)
    return b"ok"


def main() -> None:
    with Client() as client:  # or Rain's Client("localhost", 7210)
        with client.new_session() as session:
            t = remote_fn()
            session.submit()
            try:
                session.wait_all()
            except TaskException as exc:
                print(exc)  # names the task; shows the exception and the debug lines
            try:
                session.wait_all()
            except SessionException:
                print("the session has failed:", session.failed)

        with client.new_session() as session:  # another session is not affected
            t = chatty()
            t.output.keep()
            session.submit()
            print(t.output.fetch().get_bytes())  # b'ok'
            t.update()
            print(t.info.debug)  # starting / done after 3 steps


if __name__ == "__main__":
    main()
