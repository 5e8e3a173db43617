"""Messages between an agent and one executor process, over a socketpair."""

from __future__ import annotations

import msgspec

from shoal.protocol.flag_messages import FlagAnswer, FlagCall

# The largest frame on an executor's pipe (a pipeline, a step's result): both
# ends are shoal's own processes on one machine, so only a runaway is refused.
PIPE_LIMIT = 256 * 1024 * 1024


class _Msg(msgspec.Struct, tag_field="t", tag=True, omit_defaults=True):
    pass


class Load(_Msg):
    """Unpickle the pipeline and wait for Go."""

    pipeline: bytes


class Go(_Msg):
    pass


class Loaded(_Msg):
    pass


class LoadFailed(_Msg):
    error: str


class Step(_Msg):
    index: int
    task_name: str
    ok: bool
    payload: bytes
    text: str


class Done(_Msg):
    ok: bool
    payload: bytes
    text: str


ToExecutor = Load | Go | FlagAnswer
FromExecutor = Loaded | LoadFailed | Step | Done | FlagCall
