"""Guide, "Sessions / Multiple submits": grow a session's graph step by step.

Objects of an earlier submit may be used by later tasks if they were kept.
``wait_all()`` waits for every task submitted so far, whichever submit sent it.
"""

from shoal.graph import Client, blob, tasks


def main() -> None:
    # Client() uses SHOAL_ENDPOINT, else a local cluster; Rain's
    # Client("localhost", 7210) works too.
    with Client() as client, client.new_session() as session:
        a = blob("Hello world")
        t1 = tasks.Sleep(a, 1.0)
        t1.output.keep()  # later submits will use it
        session.submit()  # first submit
        t2 = tasks.Sleep(t1.output, 1.0)
        t2.output.keep()
        session.submit()  # second submit
        session.wait_all()  # everything so far is finished
        print("after 2 submits:", t2.output.fetch().get_bytes())
        t3 = tasks.Concat((t1.output, blob("!")))
        t3.output.keep()
        session.submit()  # third submit
        session.wait_all()
        print("after 3 submits:", t3.output.fetch().get_bytes())  # b'Hello world!'
        print("submits:", session.submit_count)  # 3


if __name__ == "__main__":
    main()
