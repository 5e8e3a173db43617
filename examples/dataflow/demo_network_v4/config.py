# ----------------------------------------------------
# Demo network, version 4 (shoal.dataflow)
# ----------------------------------------------------

from shared.jobs.jobs import SourceJob

from demo_network_v4.jobs.jobs import JoinJob, ReduceJob
from demo_network_v4.pipes.pipes import OperatorPipe, ReducePipe
from shoal.dataflow import BaseNode, CSVSinkJob, InteractiveJob, PicklePipe

LOG_LEVEL = "INFO"

JOBS = [
    InteractiveJob(outputs=[OperatorPipe(104)]),
    SourceJob(outputs=[PicklePipe(101), PicklePipe(201)]),
    SourceJob(start=20, step=2, outputs=[PicklePipe(102), PicklePipe(202)]),
    SourceJob(step=-1, outputs=[PicklePipe(103), PicklePipe(203)]),
    JoinJob(
        inputs=[OperatorPipe(104), PicklePipe(101), PicklePipe(102), PicklePipe(103)],
        outputs=[ReducePipe(105), PicklePipe(204), PicklePipe(205)],
    ),
    ReduceJob(inputs=[ReducePipe(105)], outputs=[PicklePipe(301)]),
    CSVSinkJob(
        path="join.csv",
        inputs=[
            PicklePipe(201),
            PicklePipe(202),
            PicklePipe(203),
            PicklePipe(204),
            PicklePipe(205),
        ],
    ),
    CSVSinkJob(path="reduce.csv", inputs=[PicklePipe(301)]),
]

NODES = [
    BaseNode("192.168.4.2"),
    BaseNode("192.168.4.3"),
    BaseNode("192.168.4.4"),
]

PRE_COPY = False
