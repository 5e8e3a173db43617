"""shoal.graph: task graphs over immutable data objects, the Rain user guide's model.

This front-end is being built. So far it has its pure building blocks, shared by
the client and the workers and free of networking: content types
(:mod:`shoal.graph.content_types`), :class:`LabeledList`, the ``spec``/``info``
attributes of tasks and objects, object IDs, and :class:`DataInstance`. The client
API (``Client``, ``blob``, ``tasks``, ``remote``...) comes with the execution engine.

>>> from shoal.graph import DataInstance, content_types
>>> data, content_type = content_types.encode({"x": 1}, "json")
>>> DataInstance(data, content_type=content_type).load()
{'x': 1}
"""

from shoal.graph import content_types
from shoal.graph.attributes import ObjectInfo, ObjectSpec, TaskInfo, TaskSpec, TaskSpecInput
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
from shoal.graph.ids import ID
from shoal.graph.labeled_list import LabeledList
from shoal.graph.task_io import TaskCancelled, TaskFailed

__all__ = [
    "ID",
    "ArgInput",
    "ArgOutput",
    "DataInstance",
    "ExecuteConfig",
    "InputMapping",
    "LabeledList",
    "LoadConfig",
    "LoadDirConfig",
    "MakeDirectoryConfig",
    "ObjectInfo",
    "ObjectSpec",
    "OutputMapping",
    "SleepConfig",
    "SliceDirectoryConfig",
    "StoreConfig",
    "TaskCancelled",
    "TaskFailed",
    "TaskInfo",
    "TaskSpec",
    "TaskSpecInput",
    "content_types",
    "remove_path",
]
