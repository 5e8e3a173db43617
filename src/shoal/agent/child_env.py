"""The environment of every process the agent starts for user work.

Children (executors, graph task workers, commands, requirement shells) run
user code, so they get only what a program needs to run and to import shoal,
never the agent's own environment: that holds the join token
(``SHOAL_AGENT_TOKEN``) and whatever else the operator exported for the
agent. Anything else a task needs it gets from its ``env=``; an operator can
pass more of the agent's variables on with ``shoal agent --pass-env NAME``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

# Exact names passed on from the agent's environment when set.
ALLOWED = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TERM",
        "PYTHONPATH",
        "VIRTUAL_ENV",
        # Trust stores: an executor reaches a TLS controller as the agent does.
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)
# Prefixes passed on (locale categories: LC_ALL, LC_CTYPE, ...).
ALLOWED_PREFIXES = ("LC_",)
# Never passed on, whatever an operator's --pass-env says.
SECRETS = frozenset({"SHOAL_AGENT_TOKEN"})

_extra: set[str] = set()


def pass_on(names: Iterable[str]) -> None:
    """Also pass these variables of the agent's environment to its children."""
    _extra.update(n for n in names if n not in SECRETS)


def allowed(name: str) -> bool:
    if name in SECRETS:
        return False
    return name in ALLOWED or name in _extra or name.startswith(ALLOWED_PREFIXES)


def child_environment(own: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allowed part of the agent's environment, then ``own`` (the task's
    ``env=`` and its scoped token) over it."""
    # By name, then the value of the few allowed: os.environ decodes each value
    # it hands out, and this runs for every command a node starts.
    env = {k: os.environ[k] for k in os.environ if allowed(k)}
    if own:
        env.update({k: v for k, v in own.items() if k not in SECRETS})
    return env
