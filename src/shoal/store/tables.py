"""The tables. Kept in SQLAlchemy Core so the same code runs on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("login", String(128), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

# Only hashes of tokens are stored: a leaked database does not leak sessions.
tokens = Table(
    "tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # "user" | "executor"
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("experiment_id", String(36), nullable=True),
    # An executor token stands for one deployment and is deleted when it ends.
    Column("deployment_id", String(36), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Index("ix_tokens_deployment", "deployment_id"),
    Index("ix_tokens_experiment", "experiment_id"),
)

nodes = Table(
    "nodes",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("architecture", String(64), nullable=False),
    Column("cpus", Integer, nullable=False),
    Column("properties", JSON, nullable=False),
    Column("online", Boolean, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("metrics", JSON, nullable=False),
)

# Each enrolled node's own credential, bound to its name; only its SHA-256 is stored.
node_credentials = Table(
    "node_credentials",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("credential_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

experiments = Table(
    "experiments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("kind", String(32), nullable=False),  # the front-end that made it
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    # What is needed to run it again (code hash, parameters, node inventory,
    # versions, packages), as the client sent it plus the controller's inventory.
    Column("reproduction", JSON, nullable=True),
    # A front-end's own facts about the whole record (a dataflow network's epoch).
    Column("summary", JSON, nullable=True),
    UniqueConstraint("owner_id", "name", name="uq_experiment_owner_name"),
)

deployments = Table(
    "deployments",
    metadata,
    Column("id", String(36), primary_key=True),  # also the executor id users see
    Column(
        "experiment_id",
        String(36),
        ForeignKey("experiments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("position", Integer, nullable=False),
    Column("node", String(255), nullable=False),
    Column("pipeline", LargeBinary, nullable=False),
    Column("requirements", JSON, nullable=False),
    # Variables set in the deployment's executor (runtime_context.environment_variables);
    # NULL in rows of an older shoal, which had none.
    Column("environment", JSON, nullable=True),
    Column("state", String(16), nullable=False),
    Column("prepared", Boolean, nullable=False),
    Column("error", Text, nullable=True),
    Column("result", LargeBinary, nullable=True),
    Column("result_text", Text, nullable=True),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Index("ix_deployments_experiment", "experiment_id"),
)

step_results = Table(
    "step_results",
    metadata,
    Column(
        "deployment_id",
        String(36),
        ForeignKey("deployments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("idx", Integer, primary_key=True),
    Column("task_name", String(255), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("text", Text, nullable=False),
)

flags = Table(
    "flags",
    metadata,
    Column(
        "experiment_id",
        String(36),
        ForeignKey("experiments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("name", String(255), primary_key=True),
    Column("text_value", Text, nullable=True),
    Column("int_value", Integer, nullable=True),
    # Bumped on every change; waiters use it to see every value, however brief.
    Column("version", Integer, nullable=False, default=0),
)

log_lines = Table(
    "log_lines",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "deployment_id",
        String(36),
        ForeignKey("deployments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("ts", Float, nullable=False),
    Column("stream", String(16), nullable=False),
    Column("line", Text, nullable=False),
    Index("ix_log_lines_deployment", "deployment_id", "id"),
)

# Commands run for a client (the runner front-end); written when they end.
commands = Table(
    "commands",
    metadata,
    Column("id", String(64), primary_key=True),
    Column(
        "experiment_id",
        String(36),
        ForeignKey("experiments.id", ondelete="CASCADE"),
        nullable=True,
    ),
    Column("node", String(255), nullable=False),
    Column("cmd", Text, nullable=False),
    Column("pid", Integer, nullable=True),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("return_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("stdout", Text, nullable=False),
    Column("stderr", Text, nullable=False),
    Column("truncated", Boolean, nullable=False),
    Index("ix_commands_experiment", "experiment_id", "started_at"),
)

# Which nodes a run's owner was granted command channels to: only those may
# report the run's commands, also to a controller started after the grant.
run_grants = Table(
    "run_grants",
    metadata,
    Column(
        "run_id",
        String(36),
        ForeignKey("experiments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("node", String(255), primary_key=True),
)

# The units of work of graph sessions (tasks, objects) and dataflow networks
# (jobs), one row each, upserted in batches as they change. Pipelines keep
# their steps in step_results and runs their commands in commands.
record_items = Table(
    "record_items",
    metadata,
    Column(
        "experiment_id",
        String(36),
        ForeignKey("experiments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("item", String(64), primary_key=True),  # "task:12", "object:7", "job:3"
    Column("kind", String(16), nullable=False),  # task | object | job
    Column("seq", BigInteger, nullable=False),  # the id within its kind, for ordering
    Column("name", Text, nullable=False),
    Column("type", String(255), nullable=False),
    Column("node", String(255), nullable=True),
    Column("state", String(16), nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("error", Text, nullable=True),
    Column("info", JSON, nullable=False),
    Index("ix_record_items_kind", "experiment_id", "kind", "seq"),
)
