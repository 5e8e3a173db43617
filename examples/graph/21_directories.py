"""Guide, "Directories": directory objects, MakeDirectory, SliceDirectory, OutputDir.

A directory object maps to a directory in a task's working directory, and reads
as a tar archive through ``get_bytes()``. The guide's ``git clone`` is replaced
by a shell command that makes a directory, so that the script runs offline.
"""

import io
import tarfile
import tempfile
from pathlib import Path

from shoal.graph import Client, InputDir, OutputDir, blob, directory, remote, tasks


@remote(inputs={"tree": InputDir()})
def list_files(ctx, tree):
    tree.write("copy")  # a directory on disk again
    return "\n".join(sorted(str(p.relative_to("copy")) for p in Path("copy").rglob("*")))


def tar_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return sorted(tar.getnames())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "dir"
        (local / "sub").mkdir(parents=True)
        (local / "top.txt").write_text("top\n")
        (local / "sub" / "inner.txt").write_text("inner\n")

        # Client() uses SHOAL_ENDPOINT, else a local cluster; Rain's
        # Client("localhost", 7210) works too.
        with Client() as client, client.new_session() as session:
            # A directory object from the client's file system (read recursively now).
            d = directory(local)
            data1 = blob(b"12345")
            data2 = blob(b"67890")
            # A directory made of objects: blobs become files, directories subdirs.
            d2 = tasks.MakeDirectory(
                tasks.make_directory(
                    [
                        ("myfile.txt", data1),
                        ("adir", d),
                        ("a/deep/path/x", data2),  # the parents are created
                    ]
                )
            )
            d3 = tasks.SliceDirectory(d2, "a/deep/path/x")  # one file: a blob
            d4 = tasks.SliceDirectory(d2, "a/deep/")  # a '/' at the end: a directory
            # A directory a program leaves behind, as an output.
            made = tasks.Execute(
                "mkdir -p rain/src && echo fn > rain/src/lib.rs && echo readme > rain/README",
                shell=True,
                output_paths=[OutputDir("rain")],
            )
            listing = list_files(d2)
            for t in (d2, d3, d4, made, listing):
                t.output.keep()
            session.submit()
            print("d2:", tar_names(d2.output.fetch().get_bytes()))
            print("d3:", d3.output.fetch().get_bytes())  # b'67890'
            print("d4:", tar_names(d4.output.fetch().get_bytes()))
            fetched = made.output.fetch()
            fetched.write(Path(tmp) / "rain")  # unpack on the client
            print("rain/README:", (Path(tmp) / "rain" / "README").read_text().strip())
            print("listing:", listing.output.fetch().get_bytes().decode().split("\n"))


if __name__ == "__main__":
    main()
