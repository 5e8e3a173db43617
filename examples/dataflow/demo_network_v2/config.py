# ----------------------------------------------------
# Demo network, version 2 (shoal.dataflow)
# ----------------------------------------------------

from shared.jobs.jobs import JoinJob, SourceJob

from demo_network_v2.jobs.jobs import ReduceJob
from demo_network_v2.pipes.pipes import ReducePipe
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
