"""Version 1: three counting sources, a join that multiplies, a reduce that sums."""

import os
import time

from shoal.dataflow import PythonJob

PERIOD = float(os.environ.get("SHOAL_DEMO_PERIOD", "1"))


class SourceJob(PythonJob):
    def run(self):
        value = 1
        while True:
            print(f"{self.id} -> {value}")
            yield value
            time.sleep(PERIOD)
            value += 1


class JoinJob(PythonJob):
    def run(self, in_1, in_2, in_3):
        result = in_1 * in_2 * in_3
        print(f"{self.id} -> {result}")
        return result


class ReduceJob(PythonJob):
    def run(self, L):
        result = sum(L)
        print(f"{self.id} -> Sum over {L} is {result}")
