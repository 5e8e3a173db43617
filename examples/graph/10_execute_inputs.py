"""Guide, "Running external programs / Inputs": data objects in a program's files.

A data object in the argv is mapped to a file with a random name, put in the
argv; ``Input`` chooses the file name; ``input_paths`` maps a file without
putting it in the argv; ``stdin`` feeds an object to the standard input.
The guide's "a-program argument1" is played by ``wc -l``.
"""

from shoal.graph import Client, Input, blob, tasks


def main() -> None:
    with Client() as client:  # or Rain's Client("localhost", 7210)
        with client.new_session() as session:
            data = blob(b"It is\nrainy day\n")
            # 'data' is mapped to a file XXX (random name); runs "grep rain XXX".
            task = tasks.Execute(["grep", "rain", data], stdout=True)
            task.output.keep()
            session.submit()
            print(task.output.fetch().get_bytes())  # b'rainy day\n'

        with client.new_session() as session:
            my_data = blob(b"It is\nrainy day\n")
            # "wc -l myfile", with my_data mapped at myfile.
            t1 = tasks.Execute(
                ["wc", "-l", Input("my_label", path="myfile", dataobj=my_data)], stdout=True
            )
            # The same file, but its name is not added to the argv.
            t2 = tasks.Execute(
                ["wc", "-l", "myfile"],
                input_paths=[Input("my_label", path="myfile", dataobj=my_data)],
                stdout=True,
            )
            # my_data on the standard input.
            t3 = tasks.Execute(["wc", "-l"], stdin=my_data, stdout=True)
            for t in (t1, t2, t3):
                t.output.keep()
            session.submit()
            print("argument Input:", t1.output.fetch().get_bytes())  # b'2 myfile\n'
            print("input_paths:   ", t2.output.fetch().get_bytes())  # b'2 myfile\n'
            print("stdin:         ", t3.output.fetch().get_bytes())  # b'2\n'


if __name__ == "__main__":
    main()
