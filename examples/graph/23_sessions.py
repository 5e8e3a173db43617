"""Guide, "Sessions": several sessions, the active session, closing.

``with session:`` makes a session active (tasks and objects go there) and closes
it at the end; ``with session.bind_only():`` makes it active without closing it.
Sessions are independent: their graphs run at the same time.
"""

from shoal.graph import Client, blob, tasks
from shoal.graph.session import GraphError, active_session


def active_name() -> str:
    try:
        return active_session().name
    except GraphError:
        return "none"


def main() -> None:
    with Client() as client:  # or Rain's Client("localhost", 7210)
        print("active:", active_name())  # none
        with client.new_session(name="a") as a:
            print("active:", active_name())  # a
            with client.new_session(name="b") as b:
                print("active:", active_name())  # b
            print("active:", active_name(), "b closed:", b.is_closed)  # a, True
        print("active:", active_name(), "a closed:", a.is_closed)  # none, True

        session = client.new_session(name="long-lived")
        with session.bind_only():
            print("active:", active_name())  # long-lived
            t = tasks.Concat([blob("bound "), blob("only")])
            t.output.keep()
        print("active:", active_name(), "closed:", session.is_closed)  # none, False
        session.submit()  # submitting needs no active session
        print(t.output.fetch().get_bytes())  # b'bound only'

        # Two sessions at once: each graph runs independently.
        first, second = client.new_session(name="first"), client.new_session(name="second")
        with first.bind_only():
            s1 = tasks.Sleep(blob("from first"), 0.5)
            s1.output.keep()
        with second.bind_only():
            s2 = tasks.Sleep(blob("from second"), 0.5)
            s2.output.keep()
        first.submit()
        second.submit()
        print(s1.output.fetch().get_bytes(), s2.output.fetch().get_bytes())
        for s in (session, first, second):
            s.close()  # free what the server holds for them
        try:
            session.submit()
        except GraphError as exc:
            print("closed for good:", exc)


if __name__ == "__main__":
    main()
