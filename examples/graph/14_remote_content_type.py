"""Guide, "Python tasks / Inputs": an input that must be JSON.

``Input(content_type="json")``: a JSON object is passed as it is; an object with
no content type is given 'json'; an object of another content type is an error.
"""

from shoal.graph import Client, Input, SessionException, blob, remote
from shoal.graph.session import GraphError


@remote(inputs={"data": Input(content_type="json")})
def total(ctx, data):
    return f"{data.content_type}: {sum(data.load())}"


def main() -> None:
    with Client() as client:  # or Rain's Client("localhost", 7210)
        with client.new_session() as session:
            as_json = total(blob([1, 2, 3], encode="json"))  # 1) json: passed as it is
            untyped = total(blob(b"[4, 5, 6]"))  # 2) no content type: it becomes json
            as_json.output.keep()
            untyped.output.keep()
            session.submit()
            print(as_json.output.fetch().get_bytes())  # b'json: 6'
            print(untyped.output.fetch().get_bytes())  # b'json: 15'

        with client.new_session() as session:
            try:  # 3) another content type: the task fails (here, already when made)
                t = total(blob("[7, 8, 9]"))  # a str is 'text'
                t.output.keep()
                session.submit()
                t.output.fetch()
            except (ValueError, TypeError, GraphError, SessionException) as exc:
                print("refused:", exc)


if __name__ == "__main__":
    main()
