"""Guide, "Sessions in interactive mode": a default session, no ``with`` block.

A session made with ``default=True`` receives new tasks and objects whenever no
other session is bound, which suits an interactive interpreter.
"""

from shoal.graph import Client, blob, tasks


def main() -> None:
    client = Client()  # or Rain's Client("localhost", 7210)
    session = client.new_session(default=True)  # the DEFAULT session
    a = blob("Hello ")
    b = blob("world!")
    t = tasks.Concat([a, b])
    t.output.keep()
    session.submit()
    session.wait_all()
    print(t.output.fetch().get_bytes())  # b'Hello world!'
    session.close()
    client.close()


if __name__ == "__main__":
    main()
