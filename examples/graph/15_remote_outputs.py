"""Guide, "Python tasks / Outputs": what remote functions return.

One output by default: bytes (no content type) or str (content type 'text').
``outputs=`` sets their number, labels, content types and encodings. A
``DataInstance`` returned sets the output's attributes too.
"""

from shoal.graph import Client, DataInstance, Output, remote


@remote()
def fn1(ctx):
    return b"Returning bytes"


@remote()
def fn2(ctx):
    return "Returning string"


@remote(outputs=3)  # three unlabelled outputs
def fn3(ctx):
    return (b"data1", b"data2", b"data3")


@remote(outputs=0)  # no output
def fn4(ctx):
    pass


@remote(outputs=("label1", "label2"))  # labelled outputs
def fn5(ctx):
    return {"label1": b"data1", "label2": b"data2"}


@remote(outputs=(Output(content_type="json"), Output(content_type="json")))
def fn6(ctx):
    return ("[1, 2, 3]", '{"x": 123}')  # already JSON text


@remote(outputs=(Output(encode="pickle"), Output(encode="json")))
def fn7(ctx):
    return ([1, 2, 3], {"x": 123})  # encoded by the call


@remote(outputs=Output(content_type="text"))
def fn8(ctx):
    # A DataInstance sets the actual content type, a subtype of the declared one.
    return DataInstance("Dobrý den".encode("latin2"), content_type="text-latin2")


def main() -> None:
    # Client() uses SHOAL_ENDPOINT, else a local cluster; Rain's
    # Client("localhost", 7210) works too.
    with Client() as client, client.new_session() as session:
        made = [fn1(), fn2(), fn3(), fn4(), fn5(), fn6(), fn7(), fn8()]
        for t in made:
            t.keep_outputs()
        session.submit()
        session.wait_all()
        for t in made:
            print(f"{t.name}: {len(t.outputs)} output(s)")
            for label, instance in zip(t.outputs.labels, t.fetch_outputs(), strict=False):
                ct = instance.content_type
                value = instance.load() if ct else instance.get_bytes()
                print(f"    label={label!r} content_type={ct!r} value={value!r}")


if __name__ == "__main__":
    main()
