"""Environment definitions: how a node is made ready for a pipeline.

The names and fields are netUnicorn's (``netunicorn.base.environment_definitions``),
so code written for it runs unchanged. On shoal's own pipelines:

- ``ShellExecution(commands=[...])`` and ``DockerImage()`` *without* an image
  both run their ``commands`` on the node, in its shell, before the pipeline
  is loaded, exactly like task ``requirements`` (a failing command fails that
  deployment at prepare, with the command's output in its error);
- ``runtime_context.environment_variables`` are set in the executor's
  environment before any of the pipeline's tasks runs;
- ``DockerImage(image="...")`` cannot run there: shoal's executor is a Python
  process on the node, not a container. The deployment fails at prepare with an
  error naming the image (netUnicorn's own client, through shoal's
  ``/netunicorn`` endpoint, does run images on nodes that have Docker).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

__all__ = [
    "BuildContext",
    "DockerImage",
    "EnvironmentDefinition",
    "RuntimeContext",
    "ShellExecution",
]


@dataclass
class RuntimeContext:
    """What a deployment's executor runs with.

    ``environment_variables`` are set for the executor. ``ports_mapping``
    (host port to container port) and ``network`` describe a container, and
    shoal's pipelines run in none, so they change nothing there.
    ``additional_arguments`` are refused at prepare (there is no runtime to
    hand them to).
    """

    ports_mapping: dict[int, int] = field(default_factory=dict)
    environment_variables: dict[str, str] = field(default_factory=dict)
    network: str | None = None
    additional_arguments: list[str] = field(default_factory=list)


@dataclass
class EnvironmentDefinition:
    """Base of the environment definitions: ``commands`` that prepare the node,
    and the executor's :class:`RuntimeContext`."""

    commands: list[str] = field(default_factory=list)
    runtime_context: RuntimeContext = field(default_factory=RuntimeContext)

    def __hash__(self) -> int:
        # as netUnicorn's: definitions with the same commands prepare the same node
        return hash(tuple(self.commands))


@dataclass
class ShellExecution(EnvironmentDefinition):
    """Prepare the node by running ``commands`` in its shell."""

    # a dataclass with eq would drop the inherited hash
    __hash__ = EnvironmentDefinition.__hash__


def _cloudpickle_version() -> str | None:
    try:
        import cloudpickle
    except ImportError:
        return None
    return str(cloudpickle.__version__)


@dataclass(frozen=True)
class BuildContext:
    """The Python and cloudpickle versions of the client that built the pipeline."""

    python_version: str = field(default_factory=platform.python_version)
    cloudpickle_version: str | None = field(default_factory=_cloudpickle_version)


@dataclass
class DockerImage(EnvironmentDefinition):
    """A Docker image to run the executor in.

    Without ``image`` (netUnicorn builds one from ``commands``), shoal runs the
    ``commands`` on the node and the executor directly, as for
    :class:`ShellExecution`. With an ``image``, a deployment of a shoal pipeline
    fails at prepare, naming the image: see the module's docstring.
    """

    image: str | None = None
    build_context: BuildContext = field(default_factory=BuildContext)
    runtime_context: RuntimeContext = field(default_factory=RuntimeContext)

    def __hash__(self) -> int:
        if self.image:
            return hash(self.image)
        return hash((self.build_context, tuple(self.commands)))


def check_environment_variables(where: str, variables: dict[str, str]) -> None:
    """Raise ``ValueError`` for a variable an executor's environment cannot take."""
    for key, value in variables.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(
                f"{where}: environment variable {key!r}={value!r}: names and values must be str"
            )
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ValueError(f"{where}: environment variable {key!r} is not valid")
        if key.startswith("SHOAL_"):
            # these name the executor to the controller; changing them cuts it off
            raise ValueError(f"{where}: environment variable {key!r}: SHOAL_* names are shoal's")
