"""Guide, "Task names": names for debugging, grouped by '/', not unique.

The guide's "train" program is replaced by ``echo`` so that the script runs anywhere.
"""

from shoal.graph import Client, blob, remote, tasks


@remote
def preprocess(ctx):
    return b"preprocessed"


def main() -> None:
    # Client() uses SHOAL_ENDPOINT, else a local cluster; Rain's
    # Client("localhost", 7210) works too.
    with Client() as client, client.new_session() as session:
        objects1 = [blob("a"), blob("b")]
        t1 = tasks.Concat(objects1, name="my-plain-name")
        t2 = tasks.Execute(["echo", "train", "xyz"], name="main_tasks/training/train1")
        t3 = tasks.Execute(["echo", "train", "abc"], name="main_tasks/training/train1")
        t4 = preprocess()  # a remote task is named after its function
        session.submit()
        session.wait_all()
        for t in (t1, t2, t3, t4):
            print(f"{t.name}  groups={t.name.split('/')[:-1]}")


if __name__ == "__main__":
    main()
