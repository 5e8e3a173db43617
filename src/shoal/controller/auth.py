"""Passwords, bearer tokens and who is calling.

Tokens are random strings handed out once; only their SHA-256 is stored, and a
small in-memory cache keeps the hot path (every flag call of every executor)
off the database.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from fastapi import WebSocket
from pwdlib import PasswordHash

from shoal.store import users as user_queries
from shoal.store.database import Database

_hasher = PasswordHash.recommended()


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
    """The caller: a user, or an executor acting for one experiment of a user."""

    user_id: int
    login: str
    kind: str  # "user" | "executor"
    experiment_id: str | None = None
    expires_at: float | None = None


class Authenticator:
    def __init__(self, db: Database, token_ttl: float) -> None:
        self.db = db
        self.token_ttl = token_ttl
        self._cache: dict[str, Principal] = {}

    async def login(self, login: str, password: str) -> str | None:
        async with self.db.read() as conn:
            user = await user_queries.get_user(conn, login)
        # Hash even for unknown users so timing does not reveal which logins exist.
        stored = user["password_hash"] if user else _DUMMY_HASH
        if not verify_password(password, stored) or user is None:
            return None
        token = new_token()
        expires = time.time() + self.token_ttl
        async with self.db.write() as conn:
            await user_queries.add_token(
                conn, token_digest(token), "user", user["id"], expires_at=expires
            )
        return token

    async def issue_executor_token(self, user_id: int, experiment_id: str) -> str:
        token = new_token()
        async with self.db.write() as conn:
            await user_queries.add_token(
                conn, token_digest(token), "executor", user_id, experiment_id=experiment_id
            )
        return token

    async def resolve(self, token: str) -> Principal | None:
        digest = token_digest(token)
        principal = self._cache.get(digest)
        if principal is None:
            async with self.db.read() as conn:
                row = await user_queries.get_token(conn, digest)
            if row is None:
                return None
            principal = Principal(
                user_id=row["user_id"],
                login=row["login"],
                kind=row["kind"],
                experiment_id=row["experiment_id"],
                expires_at=row["expires_at"],
            )
            self._cache[digest] = principal
        if principal.expires_at is not None and principal.expires_at < time.time():
            self._cache.pop(digest, None)
            return None
        return principal

    def forget_experiment(self, experiment_id: str) -> None:
        for digest, principal in list(self._cache.items()):
            if principal.experiment_id == experiment_id:
                del self._cache[digest]


_DUMMY_HASH = hash_password(secrets.token_hex(8))


async def accept_user(
    ws: WebSocket, auth: Authenticator, kinds: tuple[str, ...] = ("user",)
) -> Principal | None:
    """Accept a WebSocket that shows a bearer token of one of ``kinds``; close it
    (4401) otherwise. An executor's token stands for the user who owns it."""
    scheme, _, token = ws.headers.get("authorization", "").partition(" ")
    caller = await auth.resolve(token.strip()) if scheme.lower() == "bearer" else None
    if caller is None or caller.kind not in kinds:
        await ws.close(code=4401, reason=f"a bearer token of a {' or '.join(kinds)} is needed")
        return None
    await ws.accept()
    return caller
