"""Unit test of one piece: the channel service's memory of the tokens it granted
channels under is swept of revoked and expired ones."""

from __future__ import annotations

import asyncio
import time

import pytest

from shoal.controller import channel_relay
from shoal.controller.auth import Authenticator, Principal
from shoal.controller.channel_relay import ChannelService
from shoal.controller.registry import NodeRegistry


def _principal(n: int, expires_at: float | None) -> Principal:
    return Principal(
        user_id=1, login="ann", kind="user", expires_at=expires_at, digest=f"digest-{n}"
    )


@pytest.mark.timeout(30)
def test_revoked_and_expired_tokens_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channel_relay, "TOKENS_SWEEP", 8)

    async def main() -> None:
        auth = Authenticator(db=None, token_ttl=3600)  # type: ignore[arg-type]
        service = ChannelService(auth, NodeRegistry(), key_of=lambda _node: b"k" * 32, tls=False)
        past, future = time.time() - 1, time.time() + 3600
        for n in range(6):  # four expired, two live
            principal = _principal(n, past if n < 4 else future)
            assert not isinstance(await service.grant_for(principal, "n1", "probe.echo"), str)
        await service._tokens["digest-4"].close(reason="logout")  # revoked
        for n in range(6, 9):  # passing the threshold sweeps
            await service.grant_for(_principal(n, future), "n1", "probe.echo")
        assert set(service._tokens) == {"digest-5", "digest-6", "digest-7", "digest-8"}

    asyncio.run(main())
