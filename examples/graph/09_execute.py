"""Guide, "Running external programs": tasks.Execute and its outputs.

The guide downloads https://github.com/ with wget; to stay offline and
deterministic, a small shell script (itself a data object, mapped into the task's
working directory) stands in for wget: it "saves" a page as index.html and, given
``--output-file FILE``, writes its log to FILE.
"""

from shoal.graph import Client, Output, blob, tasks

FAKE_WGET = b"""\
log=/dev/null
if [ "$1" = "--output-file" ]; then log="$2"; fi
printf '<html>a page</html>\\n' > index.html
echo "saved index.html" > "$log"
"""


def main() -> None:
    with Client() as client:  # or Rain's Client("localhost", 7210)
        with client.new_session() as session:
            # No inputs and no outputs; a string is split like a shell would.
            tasks.Execute("sleep 1")
            tasks.Execute(("sleep", "1"))  # the argv given as a list
            tasks.Execute("sleep 1 && sleep 1", shell=True)  # run by /bin/sh
            session.submit()
            session.wait_all()
            print("three sleeping programs finished")

        with client.new_session() as session:
            wget = blob(FAKE_WGET)
            # A file the program leaves in its working directory becomes an output.
            t1 = tasks.Execute(["sh", wget], output_paths=[Output("index", path="index.html")])
            # A string: label and path are the same.
            t2 = tasks.Execute(["sh", wget], output_paths=["index.html"])
            # Several outputs.
            t3 = tasks.Execute(
                ["sh", wget, "--output-file", "log"], output_paths=["index.html", "log"]
            )
            # An Output in the argv: its path is put there and the file is an output.
            t4 = tasks.Execute(
                ["sh", wget, "--output-file", Output("log")], output_paths=["index.html"]
            )
            # Standard output as an output: labelled "stdout", or as chosen.
            t5 = tasks.Execute("echo standard output", stdout=True)
            t6 = tasks.Execute("echo standard output", stdout="my_label")
            t7 = tasks.Execute("echo standard output", stdout=Output("my_label"))
            every = (t1, t2, t3, t4, t5, t6, t7)
            for t in every:
                t.keep_outputs()
            session.submit()
            for number, t in enumerate(every, start=1):
                fetched = {
                    label: o.fetch().get_bytes()
                    for label, o in zip(t.outputs.labels, t.outputs, strict=False)
                }
                print(f"t{number}: {fetched}")


if __name__ == "__main__":
    main()
