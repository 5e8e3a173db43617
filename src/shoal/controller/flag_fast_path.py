"""Atomic flag increments and decrements answered before FastAPI's routing.

They are the controller's most frequent REST request (hundreds of clients
counting at a barrier), and on them FastAPI's machinery (routing, dependency
resolution, parameter validation, its exception layers) cost about twice the
operation itself. This pure ASGI middleware answers one well-formed case
itself: ``POST .../flags/{flag}/increment`` (or ``decrement``) with no query
and no body, a bearer token the authenticator knows, and, for a user, an
experiment whose name this controller has already looked up.

Everything else, including every error, goes on to the FastAPI routes in
``routes_flags``, which remain the API (and its OpenAPI document): what is
answered here is answered exactly as they would, by the same services.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec

from shoal.controller.flags import FlagRangeError, Values
from shoal.controller.limits import ASGIApp, Receive, Scope, Send
from shoal.store.faults import StoreError, faults

if TYPE_CHECKING:
    from shoal.controller.services import Services

# (experiment name or None for the executor's own, flag, verb); the path is
# already percent-decoded by the server, as the routes see it.
_PATH = re.compile(r"/api/(?:experiments/([^/]+)|executor)/flags/([^/]+)/(increment|decrement)")
_DELTA = {"increment": 1, "decrement": -1}
_MAX_FLAG_NAME = 255  # as routes_flags' FlagName
_JSON = (b"content-type", b"application/json")
encode = msgspec.json.Encoder().encode


class FlagFastPath:
    """ASGI middleware: the flag add routes' common case, without FastAPI's routing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope["query_string"]:
            match = _PATH.fullmatch(scope["path"])
            if match is not None and await self._answer(scope, match, send):
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, match: re.Match[str], send: Send) -> bool:
        """Answer the request if it is the common case; False to leave it to the routes."""
        name, flag, verb = match.groups()
        if len(flag) > _MAX_FLAG_NAME or "\0" in flag or (name is not None and "\0" in name):
            return False
        token = _bearer_and_no_body(scope["headers"])
        if token is None:
            return False
        svc: Services = scope["app"].state.services
        try:
            caller = await svc.auth.resolve(token)
        except StoreError:
            return False  # a token not in memory while the store is away: the routes' 503
        if caller is None:
            return False
        if name is None:
            if caller.kind != "executor" or caller.experiment_id is None:
                return False
            experiment = caller.experiment_id
        else:
            if caller.kind != "user":
                return False
            epoch = svc.flags.names_epoch(svc.auth.epoch)
            experiment = svc.flags.experiment_named(caller.user_id, name, epoch)
            if experiment is None:
                return False  # the route asks the store, and remembers the answer
        try:
            state = await svc.flags.add(experiment, flag, _DELTA[verb])
        except FlagRangeError as exc:
            await _send(send, 409, {"detail": str(exc)})
        except StoreError as exc:
            # As the app's handler answers a StoreError on any route.
            faults.failed("answering API requests", exc)
            await _send(send, 503, {"detail": exc.message}, (b"retry-after", b"1"))
        else:
            await _send(send, 200, flag_answer(state))
        return True


def flag_answer(state: tuple[Values | None, int]) -> dict[str, Any]:
    """A flag's values and version as the API answers them."""
    values, version = state
    text, number = values if values is not None else (None, None)
    return {"text_value": text, "int_value": number, "version": version}


def _bearer_and_no_body(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The bearer token, if there is one and the request has no body; else None."""
    token = None
    for key, value in headers:
        if key == b"authorization":
            if token is not None:
                return None  # two: the routes decide which counts
            scheme, _, rest = value.partition(b" ")
            if scheme.lower() != b"bearer" or not rest:
                return None
            try:
                token = rest.decode("ascii")
            except UnicodeDecodeError:
                return None
        elif (key == b"content-length" and value.strip() != b"0") or key == b"transfer-encoding":
            return None
    return token


async def _send(
    send: Send, status: int, body: dict[str, Any], *headers: tuple[bytes, bytes]
) -> None:
    content = encode(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", str(len(content)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": content})
