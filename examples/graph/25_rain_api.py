"""Beyond the guide: Rain's API as its users wrote it (a task type of one's own,
Program calls with a name and other outputs, @remote with name= and auto_encode=,
task states, the server's governors).

The idea follows Rain's own tests of programs and Python tasks; the code is shoal's.
"""

from shoal.graph import Client, Output, Program, Task, TaskState, blob, remote


class Twice(Task):
    """Rain's way to make a task type: a Task subclass with TASK_TYPE."""

    TASK_TYPE = "buildin/concat"

    def __init__(self, obj):
        super().__init__((obj, obj), 1)


@remote(name="stats/summary", auto_encode="json", outputs=("total", "count"))
def summary(ctx, values):
    return {"total": sum(values), "count": len(values)}


def main() -> None:
    with Client() as client:
        governors = client.get_server_info()["governors"]
        print("governors:", sorted(g["name"] for g in governors))
        sort = Program(["sort"], stdin="lines", stdout=True)
        with client.new_session() as session:
            data = blob(b"pear\napple\nfig\n")
            sorted_ = sort(lines=data, name="sort/fruit", output=Output("sorted"))
            twice = Twice(sorted_)
            stats = summary([3, 4, 5])
            twice.output.keep()
            stats.keep_outputs()
            print("to submit:", session.task_count, "tasks")
            session.submit()
            print("state after submit:", twice.state.name)
            print(twice.output.fetch().get_bytes())
            print("total:", stats.outputs["total"].fetch().load(), "name:", stats.name)
            session.wait_all()
            print("finished:", twice.state == TaskState.finished)
            twice.update()
            print("ran on", twice.info.node, "at governor", twice.info.governor)


if __name__ == "__main__":
    main()
