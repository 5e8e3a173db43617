"""Retrying what reaches the controller, until a deadline: one policy for every client.

A controller that restarts refuses connections for a few seconds. The clients
(``RemoteClient``, the graph ``Client``'s stream, the dataflow coordinator's
channel listener) ride that out the same way: exponential backoff with a little
jitter, capped at a couple of seconds, for at most ``deadline`` seconds; then
the last error is raised as it was.

::

    reply = retry_call(http.get, "/api/health", what="the health check",
                       retry_on=(httpx.TransportError,))
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import tenacity

__all__ = ["RECONNECT_DEADLINE", "retry_call", "retrying"]

#: Seconds a client keeps trying to reach a controller that does not answer.
RECONNECT_DEADLINE = 30.0

log = logging.getLogger("shoal.client")
T = TypeVar("T")


def retrying(
    what: str,
    retry_on: tuple[type[BaseException], ...],
    deadline: float = RECONNECT_DEADLINE,
    stop_event: threading.Event | None = None,
) -> tenacity.Retrying:
    """A retry loop for ``what``: retries ``retry_on`` errors for ``deadline`` seconds.

    ``stop_event``, once set, ends the retries early (a component shutting down).
    The last error is raised unchanged when they end.
    """
    stop = tenacity.stop_after_delay(deadline)
    if stop_event is not None:
        stop = stop | tenacity.stop_when_event_set(stop_event)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "%s failed (%s); retrying for up to %.0f s more",
            what,
            error,
            max(0.0, deadline - (state.seconds_since_start or 0.0)),
        )

    return tenacity.Retrying(
        stop=stop,
        wait=tenacity.wait_exponential(multiplier=0.1, max=2.0) + tenacity.wait_random(0, 0.1),
        retry=tenacity.retry_if_exception_type(retry_on),
        before_sleep=before_sleep,
        reraise=True,
    )


def retry_call(
    fn: Callable[..., T],
    *args: object,
    what: str,
    retry_on: tuple[type[BaseException], ...],
    deadline: float = RECONNECT_DEADLINE,
    stop_event: threading.Event | None = None,
    **kwargs: object,
) -> T:
    """``fn(*args, **kwargs)``, retried on ``retry_on`` errors until ``deadline``
    (see :func:`retrying`)."""
    return retrying(what, retry_on, deadline, stop_event)(fn, *args, **kwargs)
