"""Optional parts of the install: a node needs none of the controller's dependencies.

``pip install shoal`` is what a node runs (the agent, the executors, the client
library and the front-ends); ``pip install 'shoal[controller]'`` adds the
controller's web server and database drivers. Commands that run a controller
check for them first, so a light install fails with an instruction instead of a
traceback.
"""

from __future__ import annotations

import importlib.util

CONTROLLER_INSTALL = "pip install 'shoal[controller]'"

# Import names of the controller extra's distributions (python-multipart is
# importable as ``python_multipart`` in new releases and ``multipart`` in old ones).
_CONTROLLER_MODULES: dict[str, tuple[str, ...]] = {
    "fastapi": ("fastapi",),
    "uvicorn": ("uvicorn",),
    "sqlalchemy": ("sqlalchemy",),
    "aiosqlite": ("aiosqlite",),
    "asyncpg": ("asyncpg",),
    "pwdlib[argon2]": ("pwdlib",),
    "argon2-cffi": ("argon2",),
    "python-multipart": ("python_multipart", "multipart"),
    "prometheus-client": ("prometheus_client",),
}


class MissingExtra(ImportError):
    """A command needs an extra of shoal that is not installed; the message says how."""


def missing_controller_packages() -> list[str]:
    """The controller extra's distributions that cannot be imported here."""
    return [
        dist
        for dist, modules in _CONTROLLER_MODULES.items()
        if not any(importlib.util.find_spec(m) is not None for m in modules)
    ]


def require_controller(what: str = "a shoal controller") -> None:
    """Raise :class:`MissingExtra` unless the controller's dependencies are installed.

    ``what`` names what the user asked for, e.g. ``"shoal controller"``.
    """
    missing = missing_controller_packages()
    if missing:
        raise MissingExtra(
            f"{what} needs the controller's dependencies, which this install of shoal "
            f"lacks ({', '.join(missing)}); install them with: {CONTROLLER_INSTALL}"
        )


DEPLOY_INSTALL = "pip install 'shoal[deploy]'"


def require_deploy(what: str = "shoal deploy") -> None:
    """Raise :class:`MissingExtra` unless asyncssh (for deploying to hosts) is installed."""
    if importlib.util.find_spec("asyncssh") is None:
        raise MissingExtra(
            f"{what} reaches hosts over SSH with asyncssh, which this install of shoal "
            f"lacks; install it with: {DEPLOY_INSTALL}"
        )
