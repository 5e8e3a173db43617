"""Guide, "Python tasks / Decorator @remote": a Python function as a task.

Calling a decorated function makes a task; the function runs later, on a node,
with the execution context (``ctx``) as its first argument.
"""

from shoal.graph import Client, remote


@remote()
def hello(ctx):
    return "Hello world!"


def main() -> None:
    # Client() uses SHOAL_ENDPOINT, else a local cluster; Rain's
    # Client("localhost", 7210) works too.
    with Client() as client, client.new_session() as session:
        t = hello()  # makes a task; nothing runs in the client
        t.output.keep()
        session.submit()
        result = t.output.fetch()
        print(result)  # the DataInstance
        print(result.get_bytes())  # b'Hello world!'
        print("content type:", result.content_type)  # 'text': the function returned a str


if __name__ == "__main__":
    main()
