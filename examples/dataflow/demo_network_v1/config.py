# ----------------------------------------------------
# Demo network, version 1 (shoal.dataflow)
# ----------------------------------------------------

from demo_network_v1.jobs.jobs import JoinJob, ReduceJob, SourceJob
from demo_network_v1.pipes.pipes import ReducePipe
from shoal.dataflow import BaseNode, PicklePipe

LOG_LEVEL = "INFO"
LOG_FILE = "dataflow.log"

JOBS = [
    SourceJob(outputs=[PicklePipe(101)]),
    SourceJob(outputs=[PicklePipe(102)]),
    SourceJob(outputs=[PicklePipe(103)]),
    JoinJob(
        inputs=[PicklePipe(101), PicklePipe(102), PicklePipe(103)],
        outputs=[ReducePipe(105)],
    ),
    ReduceJob(inputs=[ReducePipe(105)]),
]

# Names of shoal nodes (or their IP addresses); `simulate` starts one agent per entry.
NODES = [
    BaseNode("192.168.4.2"),
    BaseNode("192.168.4.3"),
    BaseNode("192.168.4.4"),
]

PRE_COPY = False
