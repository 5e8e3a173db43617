"""Settings of one controller process."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PORT = 8642


@dataclass
class ControllerConfig:
    """What a controller needs to start.

    ``agent_token`` sets the agents' join token; None means: keep the one
    stored (hashed) in the database, making one up on first start. The
    controller writes a join token it knows in plain text (made up now, or
    given) to ``token_file`` (mode 0600), if set. ``bootstrap_users`` are
    created (or their passwords reset) at start, which is how ``shoal up``
    and local clusters get their login. ``token_ttl`` is how long (seconds) a
    login's bearer token is valid.
    """

    db_url: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    agent_token: str | None = None
    token_file: str | None = None
    bootstrap_users: tuple[tuple[str, str], ...] = ()
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 5.0
    # A node silent this long (or not back this long after a restart) has its
    # running work declared lost; between the two timeouts it is only suspect.
    lost_timeout: float = 60.0
    token_ttl: float = 7 * 24 * 3600.0
    tls_cert: str | None = None
    tls_key: str | None = None
    max_wait: float = 60.0  # longest a long-poll request is held open
    graph_capability_ttl: float = 60.0  # seconds a graph object transfer may start in
    # Largest request bodies, in bytes: logins; what carries pipelines, execution
    # graphs and results; everything else.
    max_body_auth: int = 64 * 1024
    max_body_upload: int = 256 * 1024 * 1024
    max_body: int = 4 * 1024 * 1024
    # /metrics without a login, for Prometheus scrapers (which seldom log in).
    metrics_public: bool = False
