"""The errors a dataflow network reports to its user."""

from __future__ import annotations


class DataflowError(Exception):
    """Base of the dataflow front-end's errors."""


class DefinitionError(DataflowError):
    """The network definition (config module) is wrong; nothing was started."""


class AllocationError(DataflowError, RuntimeError):
    """No node can take a job under its DEFAULT_NODE, GROUPS and preference.

    Also a ``RuntimeError``, as FISSION's was, so its ``except RuntimeError`` catches it.
    """
