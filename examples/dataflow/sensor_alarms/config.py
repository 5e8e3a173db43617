# ----------------------------------------------------
# Sensor alarms: FISSION's head bits and finish() on shoal.dataflow
# ----------------------------------------------------
# A sensor reads 12 values and then ends the whole network with finish().
# A threshold job marks the values above a limit with an alarm bit in the
# head that travels beside each value; jobs that do not look at heads pass
# the bit on untouched, and the sink counts the alarms it sees.

from shoal.dataflow import BaseNode, CSVSinkJob, PicklePipe, PythonJob

READINGS = [3, 8, 1, 12, 7, 15, 2, 9, 11, 4, 13, 6]
LIMIT = 10
ALARM_BIT = 7  # bits 0-2 of a head are the network's, the rest the jobs'


class Sensor(PythonJob):
    HEAD = True

    def run(self):
        for i, value in enumerate(READINGS):
            if i == len(READINGS) - 1:
                self.finish()  # this is the last value: every job ends after it
            yield value


class Threshold(PythonJob):
    HEAD = True

    def run(self, value):
        self.head[ALARM_BIT] = value > LIMIT
        return value


class Scale(PythonJob):
    """Knows nothing of heads: the alarm bit goes through it as it came."""

    def run(self, value):
        return value * 10


class AlarmCounter(PythonJob):
    HEAD = True

    def setup(self):
        self.alarms = 0

    def run(self, value):
        if self.head[ALARM_BIT]:
            self.alarms += 1
            print(f"alarm {self.alarms}: {value}")
        return value, int(self.head[ALARM_BIT])


JOBS = [
    Sensor(outputs=[PicklePipe(1)]),
    Threshold(inputs=[PicklePipe(1)], outputs=[PicklePipe(2)]),
    Scale(inputs=[PicklePipe(2)], outputs=[PicklePipe(3)]),
    AlarmCounter(inputs=[PicklePipe(3)], outputs=[PicklePipe(4), PicklePipe(5)]),
    CSVSinkJob("alarms.csv", inputs=[PicklePipe(4), PicklePipe(5)]),
]
NODES = [BaseNode("sensor-1"), BaseNode("sensor-2")]
