"""Jobs shared by versions 2 to 4 of the demo network."""

import os
import time
from functools import reduce

from shoal.dataflow import PythonJob

# Seconds between two source values (the tutorial's 1 s; tests make it short).
PERIOD = float(os.environ.get("SHOAL_DEMO_PERIOD", "1"))


class SourceJob(PythonJob):
    """Counts from ``start`` by ``step``, one value per period."""

    def __init__(self, start=1, step=1, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.value = start
        self.step = step

    def run(self):
        while True:
            print(f"{self.id} -> {self.value}")
            yield self.value
            time.sleep(PERIOD)
            self.value += self.step


class JoinJob(PythonJob):
    """Multiplies any number of inputs."""

    def run(self, *args):
        result = reduce(lambda x, y: x * y, args)
        print(f"{self.id} -> {result}")
        return result
