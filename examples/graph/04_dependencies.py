"""Guide, "Inter-task dependencies": the output of one task is the input of another.

``tasks.Sleep(obj, seconds)`` passes its input on after a delay; Concat waits for
it. A task with a single output can stand for that output (``Concat((a, t1))``).
"""

import time

from shoal.graph import Client, blob, tasks


def main() -> None:
    with Client() as client:  # or Rain's Client("localhost", 7210)
        with client.new_session() as session:
            a = blob("Hello ")
            b = blob("world!")
            t1 = tasks.Sleep(b, 1.0)  # after one second, 'b' again
            t2 = tasks.Concat((a, t1.output))
            t2.output.keep()
            started = time.monotonic()
            session.submit()
            result = t2.output.fetch()  # about one second
            print(result.get_bytes())  # b'Hello world!'
            print("waited for the Sleep:", time.monotonic() - started >= 1.0)

        with client.new_session() as session:
            t1 = tasks.Sleep(blob("world!"), 0.1)
            t2 = tasks.Concat((blob("Hello "), t1))  # t1 stands for t1.output
            t2.output.keep()
            session.submit()
            print(t2.output.fetch().get_bytes())  # b'Hello world!'


if __name__ == "__main__":
    main()
