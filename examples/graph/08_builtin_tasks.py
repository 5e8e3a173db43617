"""Guide, "Built-in tasks": Load, Concat, Sleep and Store in one graph.

Load and Store use the file system of the node that runs them. On a local
cluster the agents share this machine's file system, so a temporary directory
stands for the guide's /path/to/data and /path/to/result.
"""

import tempfile
from pathlib import Path

from shoal.graph import Client, blob, tasks


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_path = Path(tmp) / "data"
        data_path.write_bytes(b"file data, ")
        result_path = Path(tmp) / "result"
        # Client() uses SHOAL_ENDPOINT, else a local cluster; Rain's
        # Client("localhost", 7210) works too.
        with Client() as client, client.new_session() as session:
            data1 = tasks.Load(str(data_path))  # read a file on the node
            data2 = blob("constant data")  # a constant object
            merge = tasks.Concat((data1, data2))  # merge the two
            result = tasks.Sleep(merge, 1.0)  # wait a second
            tasks.Store(result, str(result_path))  # write to a file on the node
            session.submit()
            session.wait_all()
        print(result_path.read_bytes())  # b'file data, constant data'


if __name__ == "__main__":
    main()
