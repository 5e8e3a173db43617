"""Guide, "Fetching data objects": keep an output, submit, fetch its data.

Objects are not sent back to the client by themselves: ``keep()`` (before the
submit) asks the server to hold the object, and ``fetch()`` waits for it and
downloads it as a ``DataInstance``.
"""

from shoal.graph import Client, blob, tasks


def main() -> None:
    # Client() uses SHOAL_ENDPOINT, else a local cluster; Rain's
    # Client("localhost", 7210) works too.
    with Client() as client, client.new_session() as session:
        a = blob("Hello ")
        b = blob("world!")
        t = tasks.Concat((a, b))
        t.output.keep()  # the server keeps the result for us
        session.submit()
        result = t.output.fetch()  # waits for the task, no wait_all() needed
        print(result.get_bytes())  # b'Hello world!'

        t.output.unkeep()  # the server may free it now; no submit needed
        print("kept after unkeep:", t.output.is_kept())


if __name__ == "__main__":
    main()
