from shoal.dataflow import OptionalPicklePipe, PicklePipe


class ReducePipe(PicklePipe):
    BLOCK_COUNT = 5


class OperatorPipe(OptionalPicklePipe):
    OPTIONAL_DEFAULT = "+"
    OPTIONAL_STORE = True
    OPTIONAL_BUFFER_SIZE = 0
    OPTIONAL_DELETE_MODE = "oldest"
