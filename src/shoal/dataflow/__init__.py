"""shoal.dataflow: streaming dataflow networks, FISSION's model on shoal.

Jobs joined by numbered pipes, placed on nodes by groups and preferences,
moved to another node when theirs is lost::

    from shoal.dataflow import PythonJob, PicklePipe, BaseNode

    class Count(PythonJob):
        def run(self):
            yield from range(10)

    class Show(PythonJob):
        def run(self, value):
            print(value)

    JOBS = [Count(outputs=[PicklePipe(1)]), Show(inputs=[PicklePipe(1)])]
    NODES = [BaseNode("node-0"), BaseNode("node-1")]

Put that in ``mynet/config.py`` and run ``shoal dataflow mynet simulate``.
"""

from typing import TYPE_CHECKING, Any

from shoal.dataflow.errors import AllocationError, DataflowError, DefinitionError
from shoal.dataflow.heads import Head
from shoal.dataflow.jobs import (
    BaseJob,
    CSVSinkJob,
    InteractiveJob,
    LocalJob,
    PythonJob,
)
from shoal.dataflow.network import Network, load_network
from shoal.dataflow.nodes import BaseNode, LocalNode, MultiNode, NodeInfo
from shoal.dataflow.pipes import (
    BasePipe,
    BytesPipe,
    JSONMixIn,
    JSONPipe,
    OptionalBytesPipe,
    OptionalJSONPipe,
    OptionalMixIn,
    OptionalPicklePipe,
    PickleMixIn,
    PicklePipe,
    ReadJSONMixIn,
    ReadPickleMixIn,
    WriteJSONMixIn,
    WritePickleMixIn,
)
from shoal.dataflow.programs import (
    DynamicExecutableJob,
    DynamicMARVELOJob,
    ExecutableJob,
    MARVELOJob,
)

__all__ = [
    "AllocationError",
    "BaseJob",
    "BaseNode",
    "BasePipe",
    "BytesPipe",
    "CSVSinkJob",
    "Coordinator",
    "DataflowError",
    "DefinitionError",
    "DynamicExecutableJob",
    "DynamicMARVELOJob",
    "ExecutableJob",
    "Head",
    "InteractiveJob",
    "JSONMixIn",
    "JSONPipe",
    "LocalJob",
    "LocalNode",
    "MARVELOJob",
    "MultiNode",
    "Network",
    "NodeInfo",
    "OptionalBytesPipe",
    "OptionalJSONPipe",
    "OptionalMixIn",
    "OptionalPicklePipe",
    "PickleMixIn",
    "PicklePipe",
    "PythonJob",
    "ReadJSONMixIn",
    "ReadPickleMixIn",
    "WriteJSONMixIn",
    "WritePickleMixIn",
    "allocate",
    "emulate",
    "load_network",
    "simulate",
]


def __getattr__(name: str) -> Any:
    # The coordinator pulls in the HTTP client; job hosts on nodes never need it.
    if name == "Coordinator":
        from shoal.dataflow.coordinator import Coordinator

        return Coordinator
    if name == "simulate":
        from shoal.dataflow.simulation import simulate

        return simulate
    if name == "emulate":
        from shoal.dataflow.emulation import emulate

        return emulate
    if name == "allocate":
        from shoal.dataflow.allocation import allocate

        return allocate
    raise AttributeError(f"module 'shoal.dataflow' has no attribute {name!r}")


if TYPE_CHECKING:
    from shoal.dataflow.allocation import allocate
    from shoal.dataflow.coordinator import Coordinator
    from shoal.dataflow.emulation import emulate
    from shoal.dataflow.simulation import simulate
