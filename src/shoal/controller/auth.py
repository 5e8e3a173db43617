"""Passwords, bearer tokens and who is calling.

Tokens are random strings handed out once; only their SHA-256 is stored, and a
small in-memory cache keeps the hot path (every flag call of every executor)
off the database.

A token stops working at once when it is revoked through the
:class:`Authenticator` (logout, the end of an executor's deployment): its row
is deleted and its cache entry dropped. Revocations written to the database by
another process (``shoal user add`` for an existing user, ``shoal user
remove``) change a mark in the settings table; the authenticator reads the mark
every ``REVOCATION_POLL`` seconds and empties its cache when it changed. Open
WebSockets are closed when their token is revoked.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import WebSocket
from pwdlib import PasswordHash
from sqlalchemy.exc import SQLAlchemyError
from starlette.websockets import WebSocketState

from shoal.store import users as user_queries
from shoal.store.database import Database
from shoal.store.faults import StoreError

log = logging.getLogger("shoal.controller.auth")
_hasher = PasswordHash.recommended()

REVOCATION_POLL = 0.5  # seconds between reads of the revocation mark
CACHE_MAX_AGE = 60.0  # a cached token is checked against the store this often
SOCKETS_SWEEP = 1024  # tokens with sockets remembered before the closed ones are swept
REVOKED = 4401  # WebSocket close code for "your token is no longer valid"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    try:
        return _hasher.verify(password, password_hash)
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """The caller: a user, or an executor acting for one deployment of a user's experiment."""

    user_id: int
    login: str
    kind: str  # "user" | "executor"
    experiment_id: str | None = None
    expires_at: float | None = None
    deployment_id: str | None = None
    experiment_name: str | None = None
    digest: str = ""  # of the token that made this principal (what logout revokes)


@dataclass(frozen=True)
class _Cached:
    principal: Principal
    checked_at: float  # monotonic


class Authenticator:
    """Logs users in, issues and revokes tokens, and says who a token stands for."""

    def __init__(self, db: Database, token_ttl: float) -> None:
        self.db = db
        self.token_ttl = token_ttl
        self._cache: dict[str, _Cached] = {}
        # Bumped by every revocation: a lookup that read the store before a
        # revocation must not put what it read into the cache after it.
        self._epoch = 0
        self._sockets: dict[str, tuple[Principal, weakref.WeakSet[WebSocket]]] = {}
        self._mark: str | None = None
        self._sweep_at = SOCKETS_SWEEP

    @property
    def epoch(self) -> int:
        """Moves on with every revocation: what was learnt about a caller before
        it (e.g. which experiment a name is) may no longer hold."""
        return self._epoch

    # ----------------------------------------------------------------- issuing

    async def login(self, login: str, password: str) -> str | None:
        async with self.db.read() as conn:
            user = await user_queries.get_user(conn, login)
        # Hash even for unknown users so timing does not reveal which logins exist.
        stored = user["password_hash"] if user else _DUMMY_HASH
        # argon2 takes tens of milliseconds: off the event loop, which serves everyone.
        if not await asyncio.to_thread(verify_password, password, stored) or user is None:
            return None
        token = new_token()
        expires = time.time() + self.token_ttl
        async with self.db.write() as conn:
            await user_queries.add_token(
                conn, token_digest(token), "user", user["id"], expires_at=expires
            )
        return token

    async def issue_executor_token(
        self, user_id: int, experiment_id: str, deployment_id: str
    ) -> str:
        """A new token for one deployment; the deployment's earlier tokens are revoked."""
        token = new_token()
        async with self.db.write() as conn:
            await user_queries.delete_deployment_tokens(conn, [deployment_id])
            await user_queries.add_token(
                conn,
                token_digest(token),
                "executor",
                user_id,
                experiment_id=experiment_id,
                deployment_id=deployment_id,
            )
        self.forget(lambda p: p.deployment_id == deployment_id)
        return token

    # -------------------------------------------------------------- resolving

    async def resolve(self, token: str) -> Principal | None:
        digest = token_digest(token)
        cached = self._cache.get(digest)
        if cached is None or time.monotonic() - cached.checked_at > CACHE_MAX_AGE:
            epoch = self._epoch
            async with self.db.read() as conn:
                row = await user_queries.get_token(conn, digest)
            if row is None:
                self._cache.pop(digest, None)
                return None
            cached = _Cached(
                Principal(
                    user_id=row["user_id"],
                    login=row["login"],
                    kind=row["kind"],
                    experiment_id=row["experiment_id"],
                    expires_at=row["expires_at"],
                    deployment_id=row["deployment_id"],
                    experiment_name=row["experiment_name"],
                    digest=digest,
                ),
                time.monotonic(),
            )
            if epoch == self._epoch:
                self._cache[digest] = cached
        principal = cached.principal
        if principal.expires_at is not None and principal.expires_at < time.time():
            self._cache.pop(digest, None)
            return None
        return principal

    # -------------------------------------------------------------- revoking

    async def revoke(self, digest: str) -> None:
        """Revoke one token (logout)."""
        async with self.db.write() as conn:
            await user_queries.delete_token(conn, digest)
        self.forget(lambda p: p.digest == digest)

    async def revoke_deployments(self, deployment_ids: list[str]) -> None:
        """Revoke the executor tokens of these deployments (in a transaction of its own)."""
        if not deployment_ids:
            return
        async with self.db.write() as conn:
            await user_queries.delete_deployment_tokens(conn, deployment_ids)
        self.forget_deployments(deployment_ids)

    def forget_deployments(self, deployment_ids: list[str]) -> None:
        """Drop cached executor tokens of deployments whose rows were deleted."""
        ended = set(deployment_ids)
        if ended:
            self.forget(lambda p: p.deployment_id in ended)

    def forget_experiment(self, experiment_id: str) -> None:
        self.forget(lambda p: p.experiment_id == experiment_id)

    def forget(self, revoked: Callable[[Principal], bool]) -> None:
        """Drop the cache entries whose principal ``revoked(principal)`` is true, and
        close the WebSockets opened with them."""
        self._epoch += 1
        for digest, cached in list(self._cache.items()):
            if revoked(cached.principal):
                del self._cache[digest]
        for digest, (principal, _) in list(self._sockets.items()):
            if revoked(principal):
                self._close_sockets(digest)

    def forget_all(self) -> None:
        self._epoch += 1
        self._cache.clear()

    # ----------------------------------------------------- open WebSockets

    def opened(self, ws: WebSocket, principal: Principal) -> None:
        """Remember an accepted WebSocket so revoking its token closes it."""
        if len(self._sockets) > self._sweep_at:
            self._sockets = {d: entry for d, entry in self._sockets.items() if len(entry[1])}
            self._sweep_at = max(SOCKETS_SWEEP, 2 * len(self._sockets))
        self._sockets.setdefault(principal.digest, (principal, weakref.WeakSet()))[1].add(ws)

    def _close_sockets(self, digest: str) -> None:
        _, sockets = self._sockets.pop(digest, (None, ()))
        for ws in list(sockets):
            if ws.application_state == WebSocketState.CONNECTED:
                # Closing from here makes the handler's pending receive end.
                asyncio.get_running_loop().create_task(_close(ws))

    async def _recheck_sockets(self) -> None:
        """After an outside revocation: close sockets whose token is gone."""
        self._sockets = {d: entry for d, entry in self._sockets.items() if len(entry[1])}
        if not self._sockets:
            return
        async with self.db.read() as conn:
            alive = await user_queries.existing_tokens(conn, list(self._sockets))
        for digest in list(self._sockets):
            if digest not in alive:
                self._close_sockets(digest)

    async def watch_revocations(self) -> None:
        """Run for the controller's lifetime: notice revocations other processes wrote."""
        while True:
            try:
                async with self.db.read() as conn:
                    mark = await user_queries.revocation_mark(conn)
                if mark != self._mark:
                    first = self._mark is None and not self._cache
                    self._mark = mark
                    if not first:
                        self.forget_all()
                        await self._recheck_sockets()
            except (StoreError, SQLAlchemyError, OSError) as exc:
                # The store is away; what was cached stays valid until it returns.
                log.debug("could not read the token revocation mark: %s", exc)
            await asyncio.sleep(REVOCATION_POLL)


async def _close(ws: WebSocket) -> None:
    with contextlib.suppress(RuntimeError, OSError):
        await ws.close(code=REVOKED, reason="token revoked")


_DUMMY_HASH = hash_password(secrets.token_hex(8))


async def accept_user(
    ws: WebSocket, auth: Authenticator, kinds: tuple[str, ...] = ("user",)
) -> Principal | None:
    """Accept a WebSocket that shows a bearer token of one of ``kinds``; close it
    (4401) otherwise. An executor's token stands for the user who owns it.
    Revoking the token later closes the socket."""
    caller = await bearer_of(ws, auth)
    if caller is None or caller.kind not in kinds:
        await ws.close(code=REVOKED, reason=f"a bearer token of a {' or '.join(kinds)} is needed")
        return None
    await ws.accept()
    auth.opened(ws, caller)
    return caller


async def bearer_of(ws: WebSocket, auth: Authenticator) -> Principal | None:
    """Who the WebSocket's ``Authorization: Bearer`` header stands for, if anyone."""
    scheme, _, token = ws.headers.get("authorization", "").partition(" ")
    return await auth.resolve(token.strip()) if scheme.lower() == "bearer" else None
