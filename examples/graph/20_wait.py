"""Guide, "Waiting for object(s) and task(s)".

``wait()`` on a task or an object blocks until it is finished (no keep needed);
``session.wait([...])`` waits for several at once; ``session.wait_some([...])``
returns as soon as some are finished.
"""

import time

from shoal.graph import Client, blob, tasks


def main() -> None:
    with Client() as client:  # or Rain's Client("localhost", 7210)
        with client.new_session() as session:
            a = blob("Hello world")
            t1 = tasks.Sleep(a, 1.0)
            t2 = tasks.Sleep(a, 2.0)
            started = time.monotonic()
            session.submit()
            t1.wait()  # t1 only, whatever t2 does
            t2.output.wait()  # an object: until it is finished
            session.wait([t1, t2.output])  # the same, in one call
            print("both finished; took at least 2 s:", time.monotonic() - started >= 2.0)

        with client.new_session() as session:
            a = blob("Hello world")
            fast = tasks.Sleep(a, 0.1, name="fast")
            slow = tasks.Sleep(a, 3.0, name="slow")
            session.submit()
            finished_tasks, _ = session.wait_some([fast, slow])
            print("first finished:", [t.name for t in finished_tasks])  # ['fast']


if __name__ == "__main__":
    main()
