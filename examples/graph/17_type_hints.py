"""Guide, "Python tasks / Type hints": Input and Output as annotations.

A parameter annotated with an ``Input`` is configured as with ``inputs=``; a
return annotation of ``Output`` (or a tuple of them) sets ``outputs=``.
"""

from shoal.graph import Client, Input, Output, blob, remote


@remote
def test1(ctx, a: Input(content_type="json", load=True)) -> Output(
    encode="pickle", label="test_pickle"
):
    return {"sum": sum(a)}


def main() -> None:
    # Client() uses SHOAL_ENDPOINT, else a local cluster; Rain's
    # Client("localhost", 7210) works too.
    with Client() as client, client.new_session() as session:
        t = test1(blob([1, 2, 3], encode="json"))
        print("output labels:", t.outputs.labels)  # ['test_pickle']
        t.output.keep()
        session.submit()
        result = t.outputs["test_pickle"].fetch()
        print(result.content_type, result.load())  # pickle {'sum': 6}


if __name__ == "__main__":
    main()
