"""Guide, "Task definition and submission": define a graph first, then submit it.

Two constant objects and one Concat task are put into a session; nothing runs
until ``session.submit()``, and ``wait_all()`` blocks until the task is done.
"""

from shoal.graph import Client, blob, tasks


def main() -> None:
    # Client() connects to SHOAL_ENDPOINT when it is set, else it starts a local
    # cluster of two agents. Rain's form, Client("localhost", 7210), works too.
    with Client() as client, client.new_session(name="My session") as session:
        a = blob("Hello ")  # a constant object, uploaded with the submit
        b = blob("world!")
        concat = tasks.Concat([a, b])  # a task definition: nothing runs yet
        print(f"defined {concat!r} in session {session.name!r}")
        session.submit()  # the graph goes to the controller and runs
        session.wait_all()  # every submitted task is finished
        print("all tasks finished")


if __name__ == "__main__":
    main()
