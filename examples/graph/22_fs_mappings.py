"""Guide, "Mapping data objects onto filesystem": link (read-only) or write (a copy).

Execute links its inputs by default; a program that wants to change its input
file asks for a writable copy with ``Input(..., write=True)``. In a remote
function, ``DataInstance.write(path)`` and ``link(path)`` do the same by hand.
"""

from pathlib import Path

from shoal.graph import Client, Input, blob, remote, tasks


@remote()
def my_remote_function(ctx, input1):
    input1.write("myfile")  # a copy that may be edited; the object stays as it was
    input1.link("myfile2")  # a read-only view of the object
    with open("myfile", "a") as f:
        f.write("edited\n")
    return Path("myfile").read_bytes() + b"|" + Path("myfile2").read_bytes()


def main() -> None:
    # Client() uses SHOAL_ENDPOINT, else a local cluster; Rain's
    # Client("localhost", 7210) works too.
    with Client() as client, client.new_session() as session:
        obj = blob(b"first line\n")
        # Without write=True, "myfile" would be a read-only link: do not modify it.
        edited = tasks.Execute(
            "echo 'New line' >> myfile && cat myfile",
            shell=True,
            input_paths=[Input("myfile", dataobj=obj, write=True)],
            stdout=True,
        )
        by_hand = my_remote_function(obj)
        edited.output.keep()
        by_hand.output.keep()
        obj.keep()
        session.submit()
        print(edited.output.fetch().get_bytes())  # b'first line\nNew line\n'
        print(by_hand.output.fetch().get_bytes())  # b'first line\nedited\n|first line\n'
        print("the object itself:", obj.fetch().get_bytes())  # b'first line\n'


if __name__ == "__main__":
    main()
