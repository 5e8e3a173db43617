"""Guide, "Python tasks / Inputs": arguments of remote functions.

Plain arguments travel by cloudpickle. Data objects (also deep inside lists,
dicts or your own objects) become task inputs and arrive as ``DataInstance`` s;
``load()`` reads them by their content type, and ``Input(load=True)`` or
``auto_load=True`` make the call do it.
"""

from shoal.graph import Client, Input, blob, remote


@remote()
def hello(ctx, data1, data2):
    return data1 + data2.get_bytes()


class MyClass:
    def __init__(self, my_data):
        self.my_data = my_data


@remote()
def my_call(ctx, input):
    # 'input' is a MyClass whose my_data is a list of DataInstances
    return b",".join(d.get_bytes() for d in input.my_data)


@remote()
def fn1(ctx, data):
    loaded_data = data.load()  # by the content type; an error if it has none
    return str(sum(loaded_data))


@remote(inputs={"data": Input(load=True)})
def fn2(ctx, data):
    return str(sum(data))  # already loaded


@remote(auto_load=True)
def fn3(ctx, data, factor):
    return str(sum(data) * factor)  # every data argument loaded


def main() -> None:
    with Client() as client:  # or Rain's Client("localhost", 7210)
        with client.new_session() as s:
            data = blob("Rain!")
            t = hello(b"Hello ", data)  # b"Hello " is pickled; data is an input
            t.output.keep()
            s.submit()
            s.wait_all()
            print(t.output.fetch().get_bytes())  # b'Hello Rain!'

        with client.new_session() as s:
            my_instance = MyClass([blob(b"data1"), blob(b"data2"), blob(b"data3")])
            task = my_call(my_instance)
            print("inputs of my_call:", len(task.inputs))  # 3
            numbers = blob([1, 2, 3, 4], encode="json")
            loads = [fn1(numbers), fn2(numbers), fn3(numbers, 10)]
            for t in [task, *loads]:
                t.output.keep()
            s.submit()
            print(task.output.fetch().get_bytes())  # b'data1,data2,data3'
            for t in loads:
                print(f"{t.name}: {t.output.fetch().get_bytes()!r}")  # b'10', b'10', b'100'


if __name__ == "__main__":
    main()
