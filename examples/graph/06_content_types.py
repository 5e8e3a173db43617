"""Guide, "Object data types", "Object content types" and "Constant data objects".

Every object is a blob or a directory (its data type, fixed when the graph is
built). A blob may carry a content type that says how to read its bytes;
``DataInstance.load()`` reads the ones Python knows.
"""

from shoal.graph import Client, blob, pickled


def main() -> None:
    # Client() uses SHOAL_ENDPOINT, else a local cluster; Rain's
    # Client("localhost", 7210) works too.
    with Client() as client, client.new_session() as session:
        constants = {
            "raw bytes": blob(b"Raw data"),  # no content type
            "labelled": blob(b"Raw data", label="input data"),  # default label: 'const'
            "str": blob("String data"),  # content type 'text'
            "json text": blob("[1, 2, 3, 4]", content_type="json"),
            "encode json": blob([1, 2, 3, 4], encode="json"),
            "encode pickle": blob([1, 2, 3, 4], encode="pickle"),
            "pickled": pickled([1, 2, 3, 4]),  # the same as encode="pickle"
            "latin-2 text": blob("Dobrý den", content_type="text-latin2"),
            "user type": blob(b"\x00\x01", content_type="user/my-format"),
        }
        for obj in constants.values():
            obj.keep()
        session.submit()
        for what, obj in constants.items():
            instance = obj.fetch()
            print(
                f"{what}: label={obj.label!r} data_type={instance.data_type!r} "
                f"content_type={instance.content_type!r} bytes={instance.get_bytes()!r}"
            )
            if instance.content_type in ("text", "text-latin2", "json", "pickle"):
                print(f"    load() -> {instance.load()!r}")


if __name__ == "__main__":
    main()
