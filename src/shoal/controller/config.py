"""Settings of one controller process."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PORT = 8642


@dataclass
class ControllerConfig:
    """What a controller needs to start.

    ``token_ttl`` is how long (seconds) a login's bearer token is valid.
    ``agent_token`` None means: use the one stored in the database, creating it
    on first start. ``bootstrap_users`` are created (or their passwords reset)
    at start, which is how ``shoal up`` and local clusters get their login.
    """

    db_url: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    agent_token: str | None = None
    bootstrap_users: tuple[tuple[str, str], ...] = ()
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 5.0
    token_ttl: float = 7 * 24 * 3600.0
    tls_cert: str | None = None
    tls_key: str | None = None
    max_wait: float = 60.0  # longest a long-poll request is held open
    # Largest request bodies, in bytes: logins; what carries pipelines, execution
    # graphs and results; everything else.
    max_body_auth: int = 64 * 1024
    max_body_upload: int = 256 * 1024 * 1024
    max_body: int = 4 * 1024 * 1024
