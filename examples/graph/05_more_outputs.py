"""Guide, "More outputs": ``task.outputs`` is a LabeledList, by position and by label.

The task runs the equivalent of ``cat data | tee output1 > output2``: one output
is a file the program writes, the other its standard output.
"""

from shoal.graph import Client, Output, blob, tasks
from shoal.graph.session import GraphError


def main() -> None:
    # Client() uses SHOAL_ENDPOINT, else a local cluster; Rain's
    # Client("localhost", 7210) works too.
    with Client() as client, client.new_session() as session:
        data = blob(b"one line of data\n")
        t = tasks.Execute(["tee", Output("output1")], stdout="output2", stdin=data)
        print("labels:", t.outputs.labels)  # ['output1', 'output2']
        print("by label is by position:", t.outputs["output1"] is t.outputs[0])
        t.keep_outputs()  # keep() every output
        session.submit()
        first, second = t.fetch_outputs()  # fetch() every output
        print("output1:", first.get_bytes())  # b'one line of data\n'
        print("output2:", second.get_bytes())  # b'one line of data\n'
        try:
            t.output  # noqa: B018  (two outputs: .output is refused)
        except GraphError as exc:
            print("t.output refused:", exc)


if __name__ == "__main__":
    main()
