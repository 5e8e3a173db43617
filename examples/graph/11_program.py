"""Guide, "Factory Program": one Execute pattern, called with different data.

A ``Program`` takes the same arguments as ``tasks.Execute`` but with data-less
``Input`` s; calling it with ``label=object`` makes a task in the active session.
"""

from shoal.graph import Client, Input, Output, Program, blob

rain_grep = Program(["grep", "rain", Input("my_input", path="my_file")], stdout=True)
line_count = Program(["wc", "-l"], stdin=Input("text"), stdout=Output("count"))


def main() -> None:
    # Client() uses SHOAL_ENDPOINT, else a local cluster; Rain's
    # Client("localhost", 7210) works too.
    with Client() as client, client.new_session() as session:
        data = blob(b"It is\nrainy day\n")
        # "grep rain my_file", with 'data' mapped at my_file.
        task = rain_grep(my_input=data)
        other = rain_grep(my_input=blob(b"sunny\nrain again\nsunny\n"))
        count = line_count(text=data)
        for t in (task, other, count):
            t.output.keep()
        session.submit()
        print(task.output.fetch().get_bytes())  # b'rainy day\n'
        print(other.output.fetch().get_bytes())  # b'rain again\n'
        print("lines:", count.output.fetch().get_bytes())  # b'2\n'


if __name__ == "__main__":
    main()
