"""``XML_FILE``: a network written in MARVELO's XML, as FISSION's XMLLoader read it.

::

    <network>
      <node pi_id="192.168.4.2">
        <algorithm path="source/gain" executable="./gain.py">
          <input pipe_id="1" block_size="4"/>
          <output pipe_id="2" block_size="4" block_count="1"/>
          <parameter param="--gain 2"/>
        </algorithm>
      </node>
    </network>

Each algorithm becomes a :class:`DynamicMARVELOJob` pinned to its node
(handed file descriptors, as MARVELO's programs expect), each pipe a byte
pipe of ``block_size`` bytes. The attribute names can be changed through
``XML_ARGS`` in the config (FISSION read ``XML_ARGS`` but never passed it on;
shoal honours it).
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

from shoal.dataflow.errors import DefinitionError
from shoal.dataflow.nodes import BaseNode
from shoal.dataflow.pipes import BasePipe
from shoal.dataflow.programs import DynamicMARVELOJob

__all__ = ["LoaderPipe", "load_xml"]


class LoaderPipe(BasePipe):
    """A pipe read from an XML file: ``block_size`` bytes per value, ``block_count`` per round."""

    BLOCK_SIZE = 1

    def __init__(self, id: int, block_size: int = 1, block_count: int = 1) -> None:
        super().__init__(id)
        self.BLOCK_SIZE = block_size  # type: ignore[misc]
        self.BLOCK_COUNT = block_count  # type: ignore[misc]

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LoaderPipe)
            and other.id == self.id
            and (other.BLOCK_SIZE, other.BLOCK_COUNT) == (self.BLOCK_SIZE, self.BLOCK_COUNT)
        )

    __hash__ = BasePipe.__hash__


def load_xml(
    path: Path,
    ip: str = "pi_id",
    executable: str = "executable",
    dependencies: str = "path",
    input: str = "input",
    output: str = "output",
    pipe_id: str = "pipe_id",
    parameter_tag: str = "parameter",
    parameter: str = "param",
    block_size: str = "block_size",
    block_count: str = "block_count",
) -> tuple[list[DynamicMARVELOJob], list[BaseNode]]:
    """The jobs and nodes an XML file defines (keywords: the attribute and tag names)."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError) as exc:
        raise DefinitionError(f"XML_FILE {path}: {exc}") from None
    jobs: list[DynamicMARVELOJob] = []
    nodes: list[BaseNode] = []
    sizes: dict[int, tuple[int, int]] = {}

    def number(element: Any, name: str, default: int) -> int:
        text = element.get(name)
        if text in (None, ""):
            return default
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise DefinitionError(f"XML_FILE {path}: {name}={text!r} must be an int >= 1")
        return value

    def pipe(element: Any) -> LoaderPipe:
        ident = number(element, pipe_id, 0)
        shape = (number(element, block_size, 1), number(element, block_count, 1))
        if sizes.setdefault(ident, shape) != shape:
            raise DefinitionError(
                f"XML_FILE {path}: pipe {ident} has block size/count {sizes[ident]} "
                f"at one end and {shape} at the other"
            )
        return LoaderPipe(ident, *shape)

    for node in root:
        address = node.get(ip)
        if not address:
            raise DefinitionError(f"XML_FILE {path}: a <{node.tag}> has no {ip}= attribute")
        placed = []
        for algorithm in node:
            inputs = [pipe(e) for e in algorithm if e.tag == input]
            outputs = [pipe(e) for e in algorithm if e.tag == output]
            params = " ".join(e.get(parameter) or "" for e in algorithm if e.tag == parameter_tag)
            command = algorithm.get(executable)
            if not command:
                raise DefinitionError(
                    f"XML_FILE {path}: an algorithm on {address} has no {executable}= attribute"
                )
            job = DynamicMARVELOJob(
                algorithm.get(dependencies), command, params, inputs=inputs, outputs=outputs
            )
            job.DEFAULT_NODE = address  # type: ignore[misc]
            job.GROUPS = []  # type: ignore[misc]
            placed.append(job)
        jobs += placed
        nodes.append(BaseNode(address, max_jobs=max(len(placed), 1)))
    return jobs, nodes
