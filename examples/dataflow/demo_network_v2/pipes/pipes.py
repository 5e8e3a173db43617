from shoal.dataflow import PicklePipe


class ReducePipe(PicklePipe):
    BLOCK_COUNT = 5
