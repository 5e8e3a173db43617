"""Node identity: the join token admits a new node once, then the node has its own credential.

On its first connection a node shows the join token; the controller binds the
node's name to a fresh random credential (only its hash is stored) and hands
that credential to the agent, which keeps it and shows it on every later
connection. A credential is accepted only for the name it is bound to, and the
join token only for names that are not bound yet, so knowing the join token is
not enough to pose as a node that exists. An operator frees a name with
``shoal node forget``. The join token itself is stored as an argon2 hash and
can be replaced (``shoal token rotate``) without touching enrolled nodes.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.controller.auth import hash_password, token_digest, verify_password
from shoal.store import nodes as node_queries
from shoal.store import settings as settings_queries
from shoal.store.database import Database

log = logging.getLogger("shoal.controller.agents")

JOIN_TOKEN_HASH = "agent_token_hash"
PLAIN_JOIN_TOKEN = "agent_token"  # how earlier versions stored it; moved to the hash at start


@dataclass(frozen=True)
class Admission:
    """What a connecting agent showed: its node credential (bound to ``name``),
    or the join token (``name`` None)."""

    name: str | None

    @property
    def by_join_token(self) -> bool:
        return self.name is None


class EnrollmentRefused(Exception):
    """The agent may not use the name it asked for; the message says why."""


def new_join_token() -> str:
    return secrets.token_urlsafe(32)


async def set_join_token(conn: AsyncConnection, token: str) -> None:
    """Make ``token`` the join token (stored hashed); enrolled nodes are not affected."""
    await settings_queries.set_setting(conn, JOIN_TOKEN_HASH, hash_password(token))
    await settings_queries.delete_setting(conn, PLAIN_JOIN_TOKEN)


async def setup_join_token(conn: AsyncConnection, given: str | None) -> str | None:
    """At controller start: the join token to use. Returns a token the controller
    made up now (to show once), or None when it was given or is already stored."""
    if given:
        await set_join_token(conn, given)
        return None
    plain = await settings_queries.get_setting(conn, PLAIN_JOIN_TOKEN)
    if plain:
        await set_join_token(conn, plain)
        return None
    if await settings_queries.get_setting(conn, JOIN_TOKEN_HASH):
        return None
    token = new_join_token()
    await set_join_token(conn, token)
    return token


class NodeEnrollment:
    """Checks who a connecting agent is, and enrolls new nodes.

    A join token shown once and found right by argon2 is remembered (as its
    SHA-256, with the stored hash it matched) while that hash stays the join
    token's: a fleet that boots together shows the same token hundreds of
    times, and argon2 costs about a quarter of a CPU second each on a small
    machine, which made a thousand nodes wait minutes to enroll. Wrong tokens
    still cost a full argon2 each, one at a time: a flood of guesses cannot
    take more than one thread of the controller.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._known: tuple[str, str] | None = None  # (stored hash, SHA-256 of the token)
        self._verifying = asyncio.Lock()

    async def admit(self, secret: str) -> Admission | None:
        """Who ``secret`` makes the caller: an enrolled node, a new one, or nobody (None)."""
        owners, stored = await self.lookup([secret])
        return await self.admission(secret, owners[0], stored)

    async def node_of(self, secret: str) -> str | None:
        """The enrolled node whose credential ``secret`` is (None: none)."""
        owners, _stored = await self.lookup([secret])
        return owners[0]

    async def lookup(self, secrets: list[str]) -> tuple[list[str | None], str | None]:
        """What the store says of many callers' secrets, in one read: the node each
        one's credential belongs to (None: none), and the join token's hash."""
        digests = [token_digest(secret) for secret in secrets if secret]
        async with self.db.read() as conn:
            owners = await node_queries.credential_owners(conn, digests)
            stored = await settings_queries.get_setting(conn, JOIN_TOKEN_HASH)
        found = [owners.get(token_digest(secret)) if secret else None for secret in secrets]
        return found, stored

    async def admission(
        self, secret: str, owner: str | None, stored: str | None
    ) -> Admission | None:
        """Who ``secret`` makes the caller, given what :meth:`lookup` found for it."""
        if not secret:
            return None
        if owner is not None:
            return Admission(owner)
        if stored and await self._is_join_token(secret, stored):
            return Admission(None)
        return None

    async def _is_join_token(self, secret: str, stored: str) -> bool:
        if self._is_known(secret, stored):
            return True
        async with self._verifying:
            # Whoever waited here for the same token finds it known now.
            if self._is_known(secret, stored):
                return True
            # argon2 takes a lot of CPU: off the event loop.
            if not await asyncio.to_thread(verify_password, secret, stored):
                return False
            self._known = (stored, token_digest(secret))
        return True

    def _is_known(self, secret: str, stored: str) -> bool:
        known = self._known
        return (
            known is not None
            and known[0] == stored
            and hmac.compare_digest(known[1], token_digest(secret))
        )

    async def enroll(self, admission: Admission, name: str) -> str | None:
        """Let the agent be ``name``: a new credential for a node that came with the
        join token (None for an enrolled node). Raises EnrollmentRefused."""
        credential = self.new_credential(admission, name)
        if credential is None:
            return None
        async with self.db.write() as conn:
            taken = await self.bind(conn, {name: credential})
        if taken:
            raise self.taken(name)
        return credential

    @staticmethod
    def new_credential(admission: Admission, name: str) -> str | None:
        """The credential to give a node that came with the join token (None for an
        enrolled node: it keeps its own). Raises EnrollmentRefused if the
        credential it showed belongs to another name."""
        if not admission.by_join_token:
            if admission.name != name:
                raise EnrollmentRefused(
                    f"this node credential belongs to node {admission.name!r}, not {name!r}"
                )
            return None
        return secrets.token_urlsafe(32)

    @staticmethod
    async def bind(conn: AsyncConnection, credentials: dict[str, str]) -> set[str]:
        """Bind each name to its new credential (name -> credential) in ``conn``'s
        transaction; the names that are enrolled with another credential already."""
        hashes = {name: token_digest(credential) for name, credential in credentials.items()}
        taken = await node_queries.enroll_many(conn, hashes)
        for name in hashes.keys() - taken:
            log.info("node %s enrolled with the join token; it has its own credential now", name)
        return taken

    @staticmethod
    def taken(name: str) -> EnrollmentRefused:
        return EnrollmentRefused(
            f"node name {name!r} is enrolled with another credential; "
            f"`shoal node forget {name}` frees it"
        )

    async def forget(self, name: str) -> bool:
        """Free ``name``: its credential stops working. False if it was not enrolled."""
        async with self.db.write() as conn:
            return await node_queries.forget_credential(conn, name)
