"""shoal.graph: task graphs over immutable data objects, the Rain user guide's model.

Code written for Rain runs by changing ``from rain.client import ...`` to
``from shoal.graph import ...``::

    from shoal.graph import Client, blob, tasks

    client = Client()                      # SHOAL_ENDPOINT, or a local cluster
    with client.new_session() as session:
        t = tasks.Concat((blob("Hello "), blob("world!")))
        t.output.keep()
        session.submit()
        print(t.output.fetch().get_bytes())   # b'Hello world!'

>>> from shoal.graph import DataInstance, content_types
>>> data, content_type = content_types.encode({"x": 1}, "json")
>>> DataInstance(data, content_type=content_type).load()
{'x': 1}
"""

from typing import TYPE_CHECKING, Any

from shoal.graph import content_types, tasks
from shoal.graph.attributes import (
    DataType,
    ObjectInfo,
    ObjectSpec,
    TaskInfo,
    TaskSpec,
    TaskSpecInput,
)
from shoal.graph.builtins import (
    LoadConfig,
    LoadDirConfig,
    MakeDirectoryConfig,
    SleepConfig,
    SliceDirectoryConfig,
    StoreConfig,
)
from shoal.graph.builtins_execute import (
    ArgInput,
    ArgOutput,
    ExecuteConfig,
    InputMapping,
    OutputMapping,
)
from shoal.graph.data_instance import DataInstance, remove_path
from shoal.graph.data_object import DataObject, blob, directory, pickled
from shoal.graph.exceptions import (
    ContentTypeError,
    RainException,
    RainTypeError,
    RainWarning,
    SessionException,
    TaskException,
)
from shoal.graph.ids import ID
from shoal.graph.labeled_list import LabeledList
from shoal.graph.program import (
    Input,
    InputBase,
    InputDir,
    Output,
    OutputBase,
    OutputDir,
    Program,
)
from shoal.graph.remote import Remote, remote
from shoal.graph.session import GraphError, Session, get_active_session
from shoal.graph.states import DataObjectState, TaskState
from shoal.graph.task import Task
from shoal.graph.task_io import TaskCancelled, TaskFailed

if TYPE_CHECKING:
    from shoal.graph.client import Client


def __getattr__(name: str) -> Any:
    # The client pulls in HTTP and WebSocket libraries; the workers that import
    # this package to run tasks never need them.
    if name == "Client":
        from shoal.graph.client import Client

        return Client
    raise AttributeError(f"module 'shoal.graph' has no attribute {name!r}")


__all__ = [
    "ID",
    "ArgInput",
    "ArgOutput",
    "Client",
    "ContentTypeError",
    "DataInstance",
    "DataObject",
    "DataObjectState",
    "DataType",
    "ExecuteConfig",
    "GraphError",
    "Input",
    "InputBase",
    "InputDir",
    "InputMapping",
    "LabeledList",
    "LoadConfig",
    "LoadDirConfig",
    "MakeDirectoryConfig",
    "ObjectInfo",
    "ObjectSpec",
    "Output",
    "OutputBase",
    "OutputDir",
    "OutputMapping",
    "Program",
    "RainException",
    "RainTypeError",
    "RainWarning",
    "Remote",
    "Session",
    "SessionException",
    "SleepConfig",
    "SliceDirectoryConfig",
    "StoreConfig",
    "Task",
    "TaskCancelled",
    "TaskException",
    "TaskFailed",
    "TaskInfo",
    "TaskSpec",
    "TaskSpecInput",
    "TaskState",
    "blob",
    "content_types",
    "directory",
    "get_active_session",
    "pickled",
    "remote",
    "remove_path",
    "tasks",
]
