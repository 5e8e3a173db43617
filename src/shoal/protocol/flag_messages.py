"""Flag calls of executors, relayed by their agent over its WebSocket.

An executor sends ``FlagCall`` over its socketpair; its agent fills in the
deployment (an executor never names it itself) and forwards the call on the
connection it already has to the controller. The controller believes a call
only for a live deployment placed on the node that relayed it, and only about
that deployment's experiment, as it would for the deployment's executor token.
The ``FlagAnswer`` travels back the same way, matched by ``id``.
"""

from __future__ import annotations

import msgspec


class _Msg(msgspec.Struct, tag_field="t", tag=True, omit_defaults=True, gc=False):
    """Fields are strings and numbers only, so no reference cycle can pass
    through these messages: the garbage collector need not track them (a
    controller remembers up to 100,000 answers, which full collections would
    otherwise walk again and again)."""


class FlagCall(_Msg):
    """``op``: get, set (both values), add (``delta``), or wait (until both values
    equal, at a version above ``after``, for at most ``timeout`` seconds)."""

    id: int
    op: str
    flag: str
    deployment: str = ""
    text_value: str | None = None
    int_value: int | None = None
    delta: int = 0
    after: int = 0
    timeout: float = 0.0


class FlagAnswer(_Msg):
    """The flag after the call; ``status`` is 0 on success, else an HTTP-like code
    (403 refused, 404 not set, 409 out of range, 503 store away) with ``error``."""

    id: int
    deployment: str = ""
    status: int = 0
    error: str = ""
    text_value: str | None = None
    int_value: int | None = None
    version: int = 0
    matched: bool = False
