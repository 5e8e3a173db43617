# ----------------------------------------------------
# Demo network, version 3 (shoal.dataflow)
# ----------------------------------------------------

from shared.jobs.jobs import JoinJob, SourceJob

from demo_network_v3.jobs.jobs import ReduceJob
from demo_network_v3.pipes.pipes import ReducePipe
from shoal.dataflow import BaseNode, CSVSinkJob, PicklePipe

LOG_LEVEL = "INFO"

JOBS = [
    SourceJob(outputs=[PicklePipe(101), PicklePipe(201)]),
    SourceJob(outputs=[PicklePipe(102), PicklePipe(202)]),
    SourceJob(outputs=[PicklePipe(103), PicklePipe(203)]),
    JoinJob(
        inputs=[PicklePipe(101), PicklePipe(102), PicklePipe(103)],
        outputs=[ReducePipe(105), PicklePipe(205)],
    ),
    ReduceJob(inputs=[ReducePipe(105)], outputs=[PicklePipe(301)]),
    CSVSinkJob(
        path="join.csv",
        inputs=[PicklePipe(201), PicklePipe(202), PicklePipe(203), PicklePipe(205)],
    ),
    CSVSinkJob(path="reduce.csv", inputs=[PicklePipe(301)]),
]

NODES = [
    BaseNode("192.168.4.2"),
    BaseNode("192.168.4.3"),
    BaseNode("192.168.4.4"),
]

PRE_COPY = False
