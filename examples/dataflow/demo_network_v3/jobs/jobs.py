"""Version 3: the reduce returns its sum, so a CSV sink can log it."""

from shoal.dataflow import PythonJob


class ReduceJob(PythonJob):
    def run(self, L):
        result = sum(L)
        print(f"{self.id} -> Sum over {L} is {result}")
        return result
