"""Version 2: the sources and the join move to shared/; the reduce stays here."""

from shoal.dataflow import PythonJob


class ReduceJob(PythonJob):
    def run(self, L):
        result = sum(L)
        print(f"{self.id} -> Sum over {L} is {result}")
